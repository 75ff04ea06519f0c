//! Inclusion and consistency proofs (RFC 6962 §2.1.1-2.1.2, RFC 9162 §2.1.3-2.1.4):
//! verify one, verify a batch, build from a full list of leaf hashes.
//!
//! Verification uses the "inner/border" decomposition of RFC 9162 §2.1.3.2 and
//! §3.2: the expected proof length is known up front, so a proof with a hash
//! inserted, removed or appended fails before any hashing.
//!
//! Consistency policy (RFC 9162 §2.1.4): an old size of 0 is an error here, as in
//! transparency-dev/merkle and its vectors (a proof from the empty tree proves
//! nothing). Callers speaking the witness protocol accept an empty proof from
//! size 0 at the protocol layer, after checking that the old root is `H("")`.

use std::fmt;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::{node_hash, node_hash_x2, Hash};
use crate::tree::{self, check_threads, with_threads};

/// Why a proof failed, without allocating: batches format only the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Inclusion: `index >= size`.
    IndexBeyondSize,
    /// Consistency: `size1 > size2`.
    SizesDecrease,
    /// Consistency: an old size of 0 (see the module policy).
    OldSizeZero,
    /// Consistency between equal sizes carries hashes.
    ProofNotEmpty,
    /// The proof has the wrong number of hashes.
    ProofLength { want: usize, got: usize },
    /// The recomputed root differs from the given root.
    RootMismatch,
    /// Consistency: the proof does not rebuild the old root.
    OldRootMismatch,
    /// Consistency: the proof does not rebuild the new root.
    NewRootMismatch,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::IndexBeyondSize => write!(f, "leaf index is not below the tree size"),
            Failure::SizesDecrease => write!(f, "the new size is smaller than the old size"),
            Failure::OldSizeZero => {
                write!(
                    f,
                    "no consistency proof exists from an empty tree (old size 0)"
                )
            }
            Failure::ProofNotEmpty => write!(f, "equal sizes need an empty proof"),
            Failure::ProofLength { want, got } => {
                write!(f, "proof has {got} hashes, expected {want}")
            }
            Failure::RootMismatch => write!(f, "computed root does not match the given root"),
            Failure::OldRootMismatch => write!(f, "proof does not rebuild the old root"),
            Failure::NewRootMismatch => write!(f, "proof does not rebuild the new root"),
        }
    }
}

/// Bit length of `x` (0 for 0).
#[inline]
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Inclusion proof length for `index < size` (RFC 9162 §2.1.3-2.1.4): `(inner, border)`.
#[inline]
fn inclusion_shape(index: u64, size: u64) -> (usize, usize) {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// A validated inclusion proof, ready to chain from its leaf to the root.
#[derive(Clone, Copy)]
struct Chain<'a> {
    hash: Hash,
    index: u64,
    inner: usize,
    proof: &'a [Hash],
}

impl<'a> Chain<'a> {
    fn new(
        leaf: &Hash,
        index: u64,
        size: u64,
        proof: &'a [Hash],
    ) -> std::result::Result<Self, Failure> {
        if index >= size {
            return Err(Failure::IndexBeyondSize);
        }
        let (inner, border) = inclusion_shape(index, size);
        if proof.len() != inner + border {
            return Err(Failure::ProofLength {
                want: inner + border,
                got: proof.len(),
            });
        }
        Ok(Chain {
            hash: *leaf,
            index,
            inner,
            proof,
        })
    }

    /// The children of step `j`: the sibling goes left on odd inner bits and on the border.
    #[inline(always)]
    fn children(&self, j: usize) -> (Hash, Hash) {
        let p = self.proof[j];
        if j < self.inner && (self.index >> j) & 1 == 0 {
            (self.hash, p)
        } else {
            (p, self.hash)
        }
    }

    fn finish(mut self, from: usize) -> Hash {
        for j in from..self.proof.len() {
            let (l, r) = self.children(j);
            self.hash = node_hash(&l, &r);
        }
        self.hash
    }
}

/// Roots implied by two proofs, their common steps hashed interleaved.
fn chain_x2(mut a: Chain<'_>, mut b: Chain<'_>) -> (Hash, Hash) {
    let common = a.proof.len().min(b.proof.len());
    for j in 0..common {
        let (la, ra) = a.children(j);
        let (lb, rb) = b.children(j);
        let [ha, hb] = node_hash_x2(&la, &ra, &lb, &rb);
        a.hash = ha;
        b.hash = hb;
    }
    (a.finish(common), b.finish(common))
}

/// The root that `proof` implies for `leaf` at `index` in a tree of `size`.
pub fn inclusion_root(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> std::result::Result<Hash, Failure> {
    if index >= size {
        return Err(Failure::IndexBeyondSize);
    }
    let (inner, border) = inclusion_shape(index, size);
    if proof.len() != inner + border {
        return Err(Failure::ProofLength {
            want: inner + border,
            got: proof.len(),
        });
    }
    let (inner_part, border_part) = proof.split_at(inner);
    let mut h = *leaf;
    for (i, p) in inner_part.iter().enumerate() {
        h = if (index >> i) & 1 == 0 {
            node_hash(&h, p)
        } else {
            node_hash(p, &h)
        };
    }
    for p in border_part {
        h = node_hash(p, &h);
    }
    Ok(h)
}

fn check_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> std::result::Result<(), Failure> {
    if inclusion_root(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(Failure::RootMismatch)
    }
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    check_inclusion(leaf, index, size, proof, root).map_err(|f| Error::Inclusion {
        index,
        size,
        reason: f.to_string(),
    })
}

fn check_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> std::result::Result<(), Failure> {
    if size1 > size2 {
        return Err(Failure::SizesDecrease);
    }
    if size1 == 0 {
        return Err(Failure::OldSizeZero);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(Failure::ProofNotEmpty);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(Failure::RootMismatch)
        };
    }
    let x1 = size1 - 1;
    let mut inner = bit_len(x1 ^ (size2 - 1));
    let border = x1.checked_shr(inner).unwrap_or(0).count_ones() as usize;
    let shift = size1.trailing_zeros();
    // size1 < size2 makes them differ above bit `shift`, so this cannot wrap.
    inner = inner.saturating_sub(shift);
    let inner = inner as usize;
    let pow2 = size1 == 1u64 << shift;
    let start = usize::from(!pow2);
    let want = start + inner + border;
    if proof.len() != want {
        return Err(Failure::ProofLength {
            want,
            got: proof.len(),
        });
    }
    let seed = if pow2 { *root1 } else { proof[0] };
    let p = &proof[start..];
    let mask = x1 >> shift;
    let (inner_part, border_part) = p.split_at(inner);

    let mut h1 = seed;
    let mut h2 = seed;
    // The old and new roots chain independently: hash their steps interleaved.
    for (i, sib) in inner_part.iter().enumerate() {
        if (mask >> i) & 1 == 1 {
            [h1, h2] = node_hash_x2(sib, &h1, sib, &h2);
        } else {
            h2 = node_hash(&h2, sib);
        }
    }
    for sib in border_part {
        [h1, h2] = node_hash_x2(sib, &h1, sib, &h2);
    }
    if h1 != *root1 {
        return Err(Failure::OldRootMismatch);
    }
    if h2 != *root2 {
        return Err(Failure::NewRootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `size2` leaves with `root2` extends the tree of `size1` with `root1`.
///
/// Old size 0 is an error (see the module policy); equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<()> {
    check_consistency(size1, size2, root1, root2, proof).map_err(|f| Error::Consistency {
        size1,
        size2,
        reason: f.to_string(),
    })
}

/// The outcome of a batch verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One flag per item, `true` when it verified.
    pub ok: Vec<bool>,
    /// The lowest failing item index and why it failed.
    pub first_failure: Option<(usize, String)>,
}

/// Reads element `i` of a per-item array that may also hold a single shared value.
#[inline]
fn pick<T>(values: &[T], i: usize) -> &T {
    if values.len() == 1 {
        &values[0]
    } else {
        &values[i]
    }
}

fn check_len(what: &'static str, len: usize, n: usize, broadcast: bool) -> Result<()> {
    if len == n || (broadcast && len == 1) {
        return Ok(());
    }
    let also = if broadcast {
        " (or 1, shared by all)"
    } else {
        ""
    };
    Err(Error::Malformed {
        what,
        at: "length".into(),
        reason: format!("has {len} items, expected {n}{also}"),
    })
}

/// Checks proof offsets (`n + 1`, non-decreasing, ending at `proof_count`) and returns them as usize.
fn check_offsets(offsets: &[u64], n: usize, proof_count: usize) -> Result<Vec<usize>> {
    check_len("proof offsets", offsets.len(), n + 1, false)?;
    let mut out = Vec::with_capacity(offsets.len());
    let mut prev = 0usize;
    for (i, &o) in offsets.iter().enumerate() {
        let o = usize::try_from(o).unwrap_or(usize::MAX);
        if o < prev || o > proof_count || (i == 0 && o != 0) {
            return Err(Error::Malformed {
                what: "proof offsets",
                at: format!("index {i}"),
                reason: format!(
                    "offset {o} must be non-decreasing, start at 0 and stay within {proof_count} proof hashes"
                ),
            });
        }
        prev = o;
        out.push(o);
    }
    if prev != proof_count {
        return Err(Error::Malformed {
            what: "proof offsets",
            at: format!("index {n}"),
            reason: format!("last offset {prev} does not cover all {proof_count} proof hashes"),
        });
    }
    Ok(out)
}

/// Items per rayon task in batch verification; a proof costs well under 10 µs.
const BATCH_GRAIN: usize = 1024;

/// Runs a batch: `pair(i, j)` verifies items `i` and `j` together (interleaved
/// hashing), `single(i)` verifies one and says why it failed.
fn run_batch<P, S>(n: usize, threads: Option<usize>, pair: P, single: S) -> Result<BatchOutcome>
where
    P: Fn(usize, usize) -> (bool, bool) + Sync,
    S: Fn(usize) -> std::result::Result<(), Failure> + Sync,
{
    let fill = |lo: usize, out: &mut [bool]| {
        let mut pairs = out.chunks_exact_mut(2);
        let mut i = lo;
        for dst in &mut pairs {
            (dst[0], dst[1]) = pair(i, i + 1);
            i += 2;
        }
        if let [last] = pairs.into_remainder() {
            *last = single(i).is_ok();
        }
    };
    check_threads(threads)?;
    let mut ok = vec![false; n];
    if n < 2 * BATCH_GRAIN || threads == Some(1) {
        fill(0, &mut ok);
    } else {
        with_threads(threads, || {
            ok.par_chunks_mut(BATCH_GRAIN)
                .enumerate()
                .for_each(|(c, chunk)| fill(c * BATCH_GRAIN, chunk));
        })?;
    }
    // Only the first failure is explained: re-check it for its reason.
    let first_failure = ok.iter().position(|v| !v).map(|i| {
        let reason = single(i)
            .err()
            .map_or_else(|| "failed".to_string(), |f| f.to_string());
        (i, reason)
    });
    Ok(BatchOutcome { ok, first_failure })
}

/// Verifies many inclusion proofs.
///
/// `proofs` holds every proof's hashes back to back; proof `i` is
/// `proofs[offsets[i]..offsets[i + 1]]`. `sizes` and `roots` may hold one
/// value shared by every item.
pub fn verify_inclusion_batch(
    leaves: &[Hash],
    indices: &[u64],
    sizes: &[u64],
    proofs: &[Hash],
    offsets: &[u64],
    roots: &[Hash],
    threads: Option<usize>,
) -> Result<BatchOutcome> {
    let n = leaves.len();
    check_len("indices", indices.len(), n, false)?;
    check_len("sizes", sizes.len(), n, true)?;
    check_len("roots", roots.len(), n, true)?;
    let offs = check_offsets(offsets, n, proofs.len())?;
    let chain = |i: usize| {
        let proof = &proofs[offs[i]..offs[i + 1]];
        Chain::new(&leaves[i], indices[i], *pick(sizes, i), proof)
    };
    let pair = |i: usize, j: usize| match (chain(i), chain(j)) {
        (Ok(a), Ok(b)) => {
            let (ra, rb) = chain_x2(a, b);
            (ra == *pick(roots, i), rb == *pick(roots, j))
        }
        (Ok(a), Err(_)) => (a.finish(0) == *pick(roots, i), false),
        (Err(_), Ok(b)) => (false, b.finish(0) == *pick(roots, j)),
        (Err(_), Err(_)) => (false, false),
    };
    let single = |i: usize| {
        let proof = &proofs[offs[i]..offs[i + 1]];
        check_inclusion(
            &leaves[i],
            indices[i],
            *pick(sizes, i),
            proof,
            pick(roots, i),
        )
    };
    run_batch(n, threads, pair, single)
}

/// Verifies many consistency proofs; layout as in [`verify_inclusion_batch`].
#[allow(clippy::too_many_arguments)]
pub fn verify_consistency_batch(
    sizes1: &[u64],
    sizes2: &[u64],
    roots1: &[Hash],
    roots2: &[Hash],
    proofs: &[Hash],
    offsets: &[u64],
    threads: Option<usize>,
) -> Result<BatchOutcome> {
    let n = sizes1.len();
    check_len("sizes2", sizes2.len(), n, true)?;
    check_len("roots1", roots1.len(), n, false)?;
    check_len("roots2", roots2.len(), n, true)?;
    let offs = check_offsets(offsets, n, proofs.len())?;
    let single = |i: usize| {
        let proof = &proofs[offs[i]..offs[i + 1]];
        check_consistency(
            sizes1[i],
            *pick(sizes2, i),
            &roots1[i],
            pick(roots2, i),
            proof,
        )
    };
    // Each consistency check already interleaves its two chains.
    let pair = |i: usize, j: usize| (single(i).is_ok(), single(j).is_ok());
    run_batch(n, threads, pair, single)
}

/// Largest power of two strictly below `n`, for `n >= 2`.
#[inline]
fn split_point(n: usize) -> usize {
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn tree_size(leaves: &[Hash], size: u64) -> Result<&[Hash]> {
    usize::try_from(size)
        .ok()
        .and_then(|s| leaves.get(..s))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tree size {size} exceeds the {} leaf hashes given",
                leaves.len()
            ))
        })
}

/// RFC 6962 §2.1.1 PATH(m, D[n]), leaf to root.
fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(tree::root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(tree::root(&leaves[..k]));
    }
}

/// Builds the inclusion proof of leaf `index` in the tree of the first `size` of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>> {
    let tree = tree_size(leaves, size)?;
    if index >= size {
        return Err(Error::InvalidArgument(format!(
            "leaf index {index} is not below the tree size {size}"
        )));
    }
    let mut out = Vec::with_capacity(64);
    // index < size <= leaves.len(), so it fits usize.
    path(index as usize, tree, &mut out);
    Ok(out)
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(tree::root(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(tree::root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(tree::root(&leaves[..k]));
    }
}

/// Builds the consistency proof from size `size1` to `size2` over the first `size2` of `leaves`.
///
/// Equal sizes give an empty proof; `size1 == 0` or `size1 > size2` are errors (module policy).
pub fn consistency_proof(leaves: &[Hash], size1: u64, size2: u64) -> Result<Vec<Hash>> {
    let tree = tree_size(leaves, size2)?;
    if size1 == 0 || size1 > size2 {
        return Err(Error::InvalidArgument(format!(
            "no consistency proof from size {size1} to {size2}: need 0 < size1 <= size2"
        )));
    }
    let mut out = Vec::with_capacity(64);
    subproof(size1 as usize, tree, true, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{leaves, mth};

    #[test]
    fn built_inclusion_proofs_verify_and_have_the_expected_length() {
        let all = leaves(70);
        for size in 1..=70u64 {
            let root = mth(&all[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(&all, index, size).unwrap();
                let (inner, border) = inclusion_shape(index, size);
                assert_eq!(proof.len(), inner + border);
                let leaf = all[index as usize];
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                assert!(verify_inclusion(&leaf, index + 1, size, &proof, &root).is_err());
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[0][3] ^= 1;
                    assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
                    assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(&leaf, index, size, &long, &root).is_err());
            }
        }
    }

    #[test]
    fn built_consistency_proofs_verify() {
        let all = leaves(70);
        for size2 in 1..=70u64 {
            let root2 = mth(&all[..size2 as usize]);
            for size1 in 1..=size2 {
                let root1 = mth(&all[..size1 as usize]);
                let proof = consistency_proof(&all, size1, size2).unwrap();
                verify_consistency(size1, size2, &root1, &root2, &proof).unwrap();
                assert!(
                    verify_consistency(size1, size2, &root2, &root1, &proof).is_err()
                        || root1 == root2
                );
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[proof.len() - 1][0] ^= 0x80;
                    assert!(verify_consistency(size1, size2, &root1, &root2, &bad).is_err());
                    assert!(verify_consistency(size1, size2, &root1, &root2, &proof[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_edge_policy() {
        let all = leaves(4);
        let r = mth(&all);
        assert!(verify_consistency(0, 4, &crate::EMPTY_ROOT, &r, &[]).is_err());
        assert!(verify_consistency(0, 0, &crate::EMPTY_ROOT, &crate::EMPTY_ROOT, &[]).is_err());
        assert!(verify_consistency(4, 3, &r, &r, &[]).is_err());
        verify_consistency(4, 4, &r, &r, &[]).unwrap();
        assert!(verify_consistency(4, 4, &r, &r, &[r]).is_err());
        assert!(consistency_proof(&all, 0, 4).is_err());
        assert!(consistency_proof(&all, 2, 5).is_err());
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let leaf = leaves(1)[0];
        let size = u64::MAX;
        let (inner, border) = inclusion_shape(0, size);
        assert_eq!((inner, border), (64, 0));
        let (inner, border) = inclusion_shape(u64::MAX - 1, size);
        assert_eq!((inner, border), (0, 63));
        assert!(verify_inclusion(&leaf, 0, u64::MAX, &[], &leaf).is_err());
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &leaf, &leaf, &[]).is_err());
        assert!(verify_consistency(1 << 63, u64::MAX, &leaf, &leaf, &[leaf; 3]).is_err());
    }

    #[test]
    fn batch_pairs_of_different_shapes_match_single_checks() {
        let all = leaves(300);
        let mut items = Vec::new();
        for size in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 300] {
            for index in [0, size / 2, size - 1, size, size + 3] {
                items.push((index, size));
            }
        }
        let mut flat = Vec::new();
        let mut offsets = vec![0u64];
        let (mut lv, mut idx, mut sz, mut roots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, &(index, size)) in items.iter().enumerate() {
            let i = index.min(size - 1);
            let mut proof = inclusion_proof(&all, i, size).unwrap();
            if k % 7 == 3 {
                proof.pop();
            }
            flat.extend(proof);
            offsets.push(flat.len() as u64);
            lv.push(all[i as usize]);
            idx.push(index);
            sz.push(size);
            roots.push(tree::root(&all[..size as usize]));
        }
        let out = verify_inclusion_batch(&lv, &idx, &sz, &flat, &offsets, &roots, Some(1)).unwrap();
        for k in 0..items.len() {
            let proof = &flat[offsets[k] as usize..offsets[k + 1] as usize];
            let single = verify_inclusion(&lv[k], idx[k], sz[k], proof, &roots[k]).is_ok();
            assert_eq!(out.ok[k], single, "item {k}: {:?}", items[k]);
        }
        assert!(out.ok.iter().any(|v| *v) && out.ok.iter().any(|v| !*v));
    }

    #[test]
    fn batch_reports_first_failure() {
        let all = leaves(5000);
        let size = 5000u64;
        let root = tree::root(&all);
        let mut flat = Vec::new();
        let mut offsets = vec![0u64];
        let indices: Vec<u64> = (0..size).collect();
        for &i in &indices {
            flat.extend(inclusion_proof(&all, i, size).unwrap());
            offsets.push(flat.len() as u64);
        }
        let mut leaves_in = all.clone();
        let out = verify_inclusion_batch(
            &leaves_in,
            &indices,
            &[size],
            &flat,
            &offsets,
            &[root],
            None,
        )
        .unwrap();
        assert!(out.ok.iter().all(|v| *v));
        assert_eq!(out.first_failure, None);
        leaves_in[4321][0] ^= 1;
        leaves_in[4999][0] ^= 1;
        let out = verify_inclusion_batch(
            &leaves_in,
            &indices,
            &[size],
            &flat,
            &offsets,
            &[root],
            Some(2),
        )
        .unwrap();
        assert_eq!(out.ok.iter().filter(|v| !**v).count(), 2);
        assert_eq!(out.first_failure.unwrap().0, 4321);
        let bad_offsets = vec![0u64; 3];
        assert!(verify_inclusion_batch(
            &all[..2],
            &indices[..2],
            &[size],
            &flat,
            &bad_offsets,
            &[root],
            None
        )
        .is_err());
    }
}
