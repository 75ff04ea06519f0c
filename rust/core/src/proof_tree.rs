//! Many proofs from one tree: every perfect node stored once, each proof then
//! read off in O(log n) (c2sp.org/tlog-tiles, with stored levels in place of tiles).
//!
//! Building the levels hashes `size - 1` nodes once and keeps about `size`
//! hashes beside the leaves; building a proof afterwards is a few lookups
//! plus folding at most one ragged right edge.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::{hash_pairs, node_hash, Hash};
use crate::tree::{check_threads, with_threads};

/// Node pairs per rayon task when building a level.
const LEVEL_GRAIN: usize = 1 << 13;

/// All perfect nodes of the tree over `leaves[..size]`.
pub struct ProofTree<'a> {
    leaves: &'a [Hash],
    /// `upper[k]` holds level `k + 1`: `size >> (k + 1)` perfect nodes.
    upper: Vec<Vec<Hash>>,
    size: u64,
}

impl<'a> ProofTree<'a> {
    /// Hashes every perfect node of the tree of the first `size` leaves.
    pub fn new(leaves: &'a [Hash], size: u64, threads: Option<usize>) -> Result<Self> {
        check_threads(threads)?;
        let n = usize::try_from(size)
            .ok()
            .filter(|n| *n <= leaves.len())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "tree size {size} exceeds the {} leaf hashes given",
                    leaves.len()
                ))
            })?;
        let leaves = &leaves[..n];
        let mut upper: Vec<Vec<Hash>> = Vec::new();
        let parallel = threads != Some(1) && n >= 4 * LEVEL_GRAIN;
        loop {
            let below: &[Hash] = upper.last().map_or(leaves, |v| v.as_slice());
            if below.len() < 2 {
                break;
            }
            let mut level = vec![[0u8; 32]; below.len() / 2];
            if parallel && level.len() >= 2 * LEVEL_GRAIN {
                with_threads(threads, || {
                    level
                        .par_chunks_mut(LEVEL_GRAIN)
                        .zip(below.par_chunks(2 * LEVEL_GRAIN))
                        .for_each(|(out, input)| hash_pairs(input, out));
                })?;
            } else {
                hash_pairs(below, &mut level);
            }
            upper.push(level);
        }
        Ok(ProofTree {
            leaves,
            upper,
            size,
        })
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Perfect node `(level, index)`; the caller keeps it inside the tree.
    fn node(&self, level: u32, index: u64) -> Hash {
        // Perfect nodes lie below `size`, so the index fits usize.
        let i = index as usize;
        if level == 0 {
            self.leaves[i]
        } else {
            self.upper[level as usize - 1][i]
        }
    }

    /// MTH of leaves `[start, size)`, where `start` is a multiple of the
    /// largest power of two not above `size - start` (a right-edge subtree).
    fn right_edge(&self, start: u64) -> Hash {
        let len = self.size - start;
        let mut acc: Option<Hash> = None;
        // Perfect nodes of the range from left (large) to right (small);
        // fold from the right, so collect first (at most 64).
        let mut parts = [([0u8; 32]); 64];
        let mut count = 0;
        let mut pos = start;
        for level in (0..64u32).rev() {
            if len >> level & 1 == 1 {
                parts[count] = self.node(level, pos >> level);
                count += 1;
                pos += 1u64 << level;
            }
        }
        for part in parts[..count].iter().rev() {
            acc = Some(match acc {
                None => *part,
                Some(h) => node_hash(part, &h),
            });
        }
        acc.unwrap_or(crate::EMPTY_ROOT)
    }

    /// Appends the path from node `(shift, idx)` up to the root (c2sp.org/tlog-tiles).
    fn path(&self, shift: u32, idx: u64, out: &mut Vec<Hash>) {
        let last = (self.size - 1) >> shift;
        let inner = 64 - (idx ^ last).leading_zeros();
        if inner == 0 {
            // The node is the root's right edge itself: only left border siblings.
        } else {
            for l in 0..inner - 1 {
                out.push(self.node(shift + l, (idx >> l) ^ 1));
            }
            let top = inner - 1;
            let sibling = (idx >> top) ^ 1;
            out.push(self.right_edge_or_node(shift + top, sibling));
        }
        let mut x = idx.checked_shr(inner).unwrap_or(0);
        let mut j = 0;
        while x != 0 {
            if x & 1 == 1 {
                let level = shift + inner + j;
                out.push(self.node(level, (idx >> (inner + j)) ^ 1));
            }
            x >>= 1;
            j += 1;
        }
    }

    /// Node `(level, index)` if perfect, else the MTH of its part inside the tree.
    fn right_edge_or_node(&self, level: u32, index: u64) -> Hash {
        let start = index << level;
        if (index + 1) << level <= self.size {
            self.node(level, index)
        } else {
            self.right_edge(start)
        }
    }

    /// The inclusion proof of leaf `index` (RFC 6962 §2.1.1 PATH).
    pub fn inclusion(&self, index: u64, out: &mut Vec<Hash>) -> Result<()> {
        if index >= self.size {
            return Err(Error::InvalidArgument(format!(
                "leaf index {index} is not below the tree size {}",
                self.size
            )));
        }
        self.path(0, index, out);
        Ok(())
    }

    /// The consistency proof from `size1` to this tree's size (RFC 6962 §2.1.2).
    pub fn consistency(&self, size1: u64, out: &mut Vec<Hash>) -> Result<()> {
        if size1 == 0 || size1 > self.size {
            return Err(Error::InvalidArgument(format!(
                "no consistency proof from size {size1} to {}: need 0 < size1 <= size2",
                self.size
            )));
        }
        if size1 == self.size {
            return Ok(());
        }
        let shift = size1.trailing_zeros();
        let idx = (size1 - 1) >> shift;
        if size1 != 1u64 << shift {
            out.push(self.node(shift, idx));
        }
        self.path(shift, idx, out);
        Ok(())
    }
}

/// Proofs back to back with `n + 1` offsets, the layout the batch verifiers take.
pub type FlatProofs = (Vec<Hash>, Vec<u64>);

fn flat<F>(n: usize, mut one: F) -> Result<FlatProofs>
where
    F: FnMut(usize, &mut Vec<Hash>) -> Result<()>,
{
    let mut hashes = Vec::with_capacity(n * 32);
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u64);
    for i in 0..n {
        one(i, &mut hashes)?;
        offsets.push(hashes.len() as u64);
    }
    Ok((hashes, offsets))
}

/// Inclusion proofs of `indices` in the tree of the first `size` leaves.
pub fn inclusion_proofs(
    leaves: &[Hash],
    indices: &[u64],
    size: u64,
    threads: Option<usize>,
) -> Result<FlatProofs> {
    let tree = ProofTree::new(leaves, size, threads)?;
    flat(indices.len(), |i, out| tree.inclusion(indices[i], out))
}

/// Consistency proofs from each of `sizes1` to `size2`.
pub fn consistency_proofs(
    leaves: &[Hash],
    sizes1: &[u64],
    size2: u64,
    threads: Option<usize>,
) -> Result<FlatProofs> {
    let tree = ProofTree::new(leaves, size2, threads)?;
    flat(sizes1.len(), |i, out| tree.consistency(sizes1[i], out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::{consistency_proof, inclusion_proof};
    use crate::tree::tests::leaves;

    #[test]
    fn stored_levels_give_the_recursive_proofs() {
        let all = leaves(140);
        for size in 1..=140u64 {
            let tree = ProofTree::new(&all, size, Some(1)).unwrap();
            for index in 0..size {
                let mut got = Vec::new();
                tree.inclusion(index, &mut got).unwrap();
                assert_eq!(
                    got,
                    inclusion_proof(&all, index, size).unwrap(),
                    "{index} {size}"
                );
            }
            for size1 in 1..=size {
                let mut got = Vec::new();
                tree.consistency(size1, &mut got).unwrap();
                assert_eq!(
                    got,
                    consistency_proof(&all, size1, size).unwrap(),
                    "{size1} {size}"
                );
            }
        }
    }

    #[test]
    fn batch_layout_and_errors() {
        let all = leaves(100_000);
        let (hashes, offsets) = inclusion_proofs(&all, &[0, 99_999, 4242], 100_000, None).unwrap();
        assert_eq!(offsets.len(), 4);
        assert_eq!(hashes.len() as u64, offsets[3]);
        let third = &hashes[offsets[2] as usize..offsets[3] as usize];
        assert_eq!(
            third,
            inclusion_proof(&all, 4242, 100_000).unwrap().as_slice()
        );
        assert!(inclusion_proofs(&all, &[100_000], 100_000, None).is_err());
        assert!(inclusion_proofs(&all, &[0], 100_001, None).is_err());
        assert!(consistency_proofs(&all, &[0], 10, None).is_err());
        let (h, o) = consistency_proofs(&all, &[77_777, 100_000], 100_000, Some(2)).unwrap();
        assert_eq!(o[2], o[1]);
        assert_eq!(
            &h[..o[1] as usize],
            consistency_proof(&all, 77_777, 100_000).unwrap().as_slice()
        );
    }
}
