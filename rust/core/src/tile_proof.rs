//! Merkle computations from C2SP hash tiles (c2sp.org/tlog-tiles): node-to-tile
//! addressing, the root of a tree from its rightmost tiles, and the nodes an
//! inclusion or consistency proof reads, evaluated over a set of fetched tiles.
//!
//! Tiles are untrusted: every lookup is bounds-checked, and a missing or
//! short tile is an error naming it. The results still have to be checked
//! against a signed checkpoint root by the caller.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::tiles::{fold_right, mth_of_concat, tile_width, TileId, FULL_TILE_BYTES, TILE_HEIGHT};

/// Where a perfect node lives: tile `(level, index)`, hashes `[offset, offset+count)`
/// folded pairwise (c2sp.org/tlog-tiles "Node lookup").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddress {
    pub tile_level: u64,
    pub tile_index: u64,
    pub offset: u64,
    pub count: u64,
}

/// Addresses perfect node `(level, index)` (covering leaves `[index·2^level, (index+1)·2^level)`).
pub fn node_address(level: u64, index: u64) -> Result<NodeAddress> {
    if level >= 64 {
        return Err(Error::InvalidArgument(format!(
            "node level {level} is above 63"
        )));
    }
    let l = level / u64::from(TILE_HEIGHT);
    let r = level % u64::from(TILE_HEIGHT);
    let shifted = index.checked_mul(1 << r).ok_or_else(|| {
        Error::InvalidArgument(format!("node ({level}, {index}) is outside a 64-bit tree"))
    })?;
    Ok(NodeAddress {
        tile_level: l,
        tile_index: shifted >> 8,
        offset: shifted & 255,
        count: 1 << r,
    })
}

/// Whether node `(level, index)` is perfect (immutable) in a tree of `size`.
pub fn is_perfect(level: u64, index: u64, size: u64) -> bool {
    index
        .checked_add(1)
        .and_then(|i| u32::try_from(level).ok().and_then(|l| i.checked_shl(l)))
        .is_some_and(|end| end <= size && (end >> level) == index + 1)
}

/// A set of fetched hash tiles for one tree size, answering node lookups.
pub struct TileSet<'a> {
    size: u64,
    tiles: HashMap<(u64, u64), &'a [u8]>,
    /// Nodes folded from several hashes, kept: proofs in one batch share them.
    memo: RefCell<HashMap<(u64, u64), Hash>>,
}

impl<'a> TileSet<'a> {
    /// Tiles for tree `size`. A tile may be longer than its width for `size`
    /// (a full tile standing in for a partial one); only its first W hashes are used.
    pub fn new(size: u64) -> Self {
        TileSet {
            size,
            tiles: HashMap::new(),
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// A set for tree `size` holding the tiles `(level, index, bytes)`.
    pub fn with_tiles(
        size: u64,
        tiles: impl IntoIterator<Item = (u64, u64, &'a [u8])>,
    ) -> Result<Self> {
        let mut set = TileSet::new(size);
        for (level, index, data) in tiles {
            set.insert(level, index, data)?;
        }
        Ok(set)
    }

    /// Adds tile `(level, index)`; it must hold at least the width `size` gives it.
    pub fn insert(&mut self, level: u64, index: u64, data: &'a [u8]) -> Result<()> {
        let want = tile_width(level, index, self.size);
        if want == 0 {
            return Err(Error::InvalidArgument(format!(
                "tile {level}/{index} does not exist in a tree of size {}",
                self.size
            )));
        }
        if data.len() % 32 != 0 {
            return Err(Error::Malformed {
                what: "hash tile",
                at: format!("tile {level}/{index}"),
                reason: format!("length {} is not a multiple of 32", data.len()),
            });
        }
        let need = (want as usize) * 32;
        if data.len() < need || data.len() > FULL_TILE_BYTES {
            return Err(Error::Malformed {
                what: "hash tile",
                at: format!("tile {level}/{index}"),
                reason: format!(
                    "holds {} hashes; tree size {} needs {want}",
                    data.len() / 32,
                    self.size
                ),
            });
        }
        self.tiles.insert((level, index), &data[..need]);
        Ok(())
    }

    /// Hash of perfect node `(level, index)`, read from its tile.
    pub fn node(&self, level: u64, index: u64) -> Result<Hash> {
        if !is_perfect(level, index, self.size) {
            return Err(Error::InvalidArgument(format!(
                "node ({level}, {index}) is not a perfect node of a tree of size {}",
                self.size
            )));
        }
        if let Some(h) = self.memo.borrow().get(&(level, index)) {
            return Ok(*h);
        }
        let a = node_address(level, index)?;
        let tile = self
            .tiles
            .get(&(a.tile_level, a.tile_index))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "tile {}/{} was not supplied",
                    a.tile_level, a.tile_index
                ))
            })?;
        let start = (a.offset * 32) as usize;
        let end = start + (a.count * 32) as usize;
        let span = tile.get(start..end).ok_or_else(|| Error::Malformed {
            what: "hash tile",
            at: format!("tile {}/{}", a.tile_level, a.tile_index),
            reason: format!("too short for node ({level}, {index})"),
        })?;
        let h = mth_of_concat(span);
        if a.count > 1 {
            self.memo.borrow_mut().insert((level, index), h);
        }
        Ok(h)
    }

    /// Evaluates a proof element: the fold of its nodes.
    pub fn element(&self, e: &ProofElement) -> Result<Hash> {
        let hashes = e
            .nodes
            .iter()
            .map(|&(l, i)| self.node(l, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(fold_right(hashes.into_iter()))
    }

    /// Root of the tree of this size (c2sp.org/tlog-tiles "Tree root").
    pub fn root(&self) -> Result<Hash> {
        self.element(&root_element(self.size))
    }

    /// Evaluates proof elements in order: one proof's hashes.
    pub fn elements(&self, elements: &[ProofElement]) -> Result<Vec<Hash>> {
        elements.iter().map(|e| self.element(e)).collect()
    }

    /// The inclusion proof of leaf `index` in this tree.
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>> {
        self.elements(&inclusion_elements(index, self.size)?)
    }

    /// The consistency proof from `old` to this tree's size.
    pub fn consistency_proof(&self, old: u64) -> Result<Vec<Hash>> {
        self.elements(&consistency_elements(old, self.size)?)
    }

    /// Inclusion proofs of many leaves, flattened: all hashes, and `n + 1`
    /// offsets (proof `k` is `hashes[offsets[k]..offsets[k + 1]]`).
    /// Nodes shared by several proofs are folded once (see `memo`).
    pub fn inclusion_proofs(&self, indices: &[u64]) -> Result<(Vec<Hash>, Vec<u64>)> {
        let mut hashes = Vec::new();
        let mut offsets = Vec::with_capacity(indices.len().saturating_add(1));
        offsets.push(0u64);
        for &index in indices {
            for e in inclusion_elements(index, self.size)? {
                hashes.push(self.element(&e)?);
            }
            offsets.push(hashes.len() as u64);
        }
        Ok((hashes, offsets))
    }
}

/// The tiles (with their widths for `size`) the inclusion proofs of all
/// `indices` read, each once.
pub fn inclusion_tiles_many(indices: &[u64], size: u64) -> Result<Vec<TileId>> {
    let mut elements = Vec::new();
    for &index in indices {
        elements.extend(inclusion_elements(index, size)?);
    }
    tiles_for_elements(&elements, size)
}

/// One hash of a proof: the root of the compact range `nodes` (left to right).
/// A single node is a plain tree node; several form an ephemeral right subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofElement {
    pub nodes: Vec<(u64, u64)>,
}

/// The perfect nodes covering leaves `[begin, end)`, left to right, when
/// `begin` is aligned to a power of two at least `end - begin`.
fn range_nodes(begin: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = begin;
    let len = end - begin;
    for l in (0..64u32).rev() {
        if len & (1u64 << l) != 0 {
            out.push((u64::from(l), pos >> l));
            pos += 1u64 << l;
        }
    }
    out
}

/// The compact range of a tree of `size`: its root as one element.
pub fn root_element(size: u64) -> ProofElement {
    ProofElement {
        nodes: range_nodes(0, size),
    }
}

fn bit_length(x: u64) -> u64 {
    u64::from(64 - x.leading_zeros())
}

/// Inclusion path of node `(shift, idx)` in a tree of `size`, at levels >= shift
/// (c2sp.org/tlog-tiles; `shift = 0` is the leaf inclusion proof).
fn path_elements(shift: u64, idx: u64, size: u64) -> Vec<ProofElement> {
    let mut out = Vec::new();
    let last = (size - 1) >> shift;
    let inner = bit_length(idx ^ last);
    for l in 0..inner.saturating_sub(1) {
        out.push(ProofElement {
            nodes: vec![(shift + l, (idx >> l) ^ 1)],
        });
    }
    if inner > 0 {
        let begin = ((idx >> (inner - 1)) ^ 1) << (inner - 1 + shift);
        out.push(ProofElement {
            nodes: range_nodes(begin, size),
        });
    }
    // `inner` is 64 when the path leaves the top bit: nothing is left above it.
    let mut x = idx
        .checked_shr(u32::try_from(inner).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let mut j = 0;
    while x != 0 {
        if x & 1 == 1 {
            out.push(ProofElement {
                nodes: vec![(shift + inner + j, (idx >> (inner + j)) ^ 1)],
            });
        }
        x >>= 1;
        j += 1;
    }
    out
}

/// The elements of the inclusion proof for leaf `index` in a tree of `size`.
pub fn inclusion_elements(index: u64, size: u64) -> Result<Vec<ProofElement>> {
    if index >= size {
        return Err(Error::InvalidArgument(format!(
            "leaf index {index} is not below tree size {size}"
        )));
    }
    Ok(path_elements(0, index, size))
}

/// The elements of the consistency proof from `old` to `size` (c2sp.org/tlog-tiles).
/// `old == size` gives an empty proof; `old == 0` is an error (RFC 9162 §2.1.4:
/// the proof is meaningless, and there is nothing to build).
pub fn consistency_elements(old: u64, size: u64) -> Result<Vec<ProofElement>> {
    if old == 0 || old > size {
        return Err(Error::InvalidArgument(format!(
            "no consistency proof from size {old} to size {size}: need 0 < old <= new"
        )));
    }
    if old == size {
        return Ok(Vec::new());
    }
    let shift = u64::from(old.trailing_zeros());
    let idx = (old - 1) >> shift;
    let mut out = Vec::new();
    if !old.is_power_of_two() {
        out.push(ProofElement {
            nodes: vec![(shift, idx)],
        });
    }
    out.extend(path_elements(shift, idx, size));
    Ok(out)
}

/// The tiles (with their widths for `size`) that the given elements read.
pub fn tiles_for_elements(elements: &[ProofElement], size: u64) -> Result<Vec<TileId>> {
    let mut seen = BTreeSet::new();
    for e in elements {
        for &(l, i) in &e.nodes {
            let a = node_address(l, i)?;
            seen.insert((a.tile_level, a.tile_index));
        }
    }
    seen.into_iter()
        .map(|(l, i)| {
            let w = tile_width(l, i, size);
            TileId::new(l, i, w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, node_hash, EMPTY_ROOT};
    use crate::tiles::{check_hash_tile, tile_root};

    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = 1usize << (63 - (n as u64 - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(i.to_string().as_bytes()))
            .collect()
    }

    /// Builds every tile of a tree of `size`, with its width for that size.
    fn build_tiles(leaves: &[Hash]) -> HashMap<(u64, u64), Vec<u8>> {
        let size = leaves.len() as u64;
        let mut out = HashMap::new();
        let mut level_hashes: Vec<Hash> = leaves.to_vec();
        let mut l = 0;
        while !level_hashes.is_empty() {
            for (t, chunk) in level_hashes.chunks(256).enumerate() {
                out.insert((l, t as u64), chunk.concat());
            }
            level_hashes = level_hashes.chunks_exact(256).map(mth).collect();
            l += 1;
        }
        let _ = size;
        out
    }

    #[test]
    fn roots_and_proofs_from_tiles_match_recursive_definitions() {
        for size in [
            1u64,
            2,
            3,
            7,
            255,
            256,
            257,
            300,
            511,
            512,
            513,
            1000,
            65536 + 5,
        ] {
            let lv = leaves(size);
            let tiles = build_tiles(&lv);
            let mut set = TileSet::new(size);
            for (&(l, i), t) in &tiles {
                if tile_width(l, i, size) > 0 {
                    set.insert(l, i, t).unwrap();
                }
            }
            assert_eq!(set.root().unwrap(), mth(&lv), "root size {size}");
            for index in [0, size / 3, size / 2, size - 1] {
                let proof: Vec<Hash> = inclusion_elements(index, size)
                    .unwrap()
                    .iter()
                    .map(|e| set.element(e).unwrap())
                    .collect();
                let mut h = lv[index as usize];
                let (mut fn_, mut sn) = (index, size - 1);
                for p in &proof {
                    if fn_ & 1 == 1 || fn_ == sn {
                        h = node_hash(p, &h);
                        if fn_ & 1 == 0 {
                            while fn_ & 1 == 0 && fn_ != 0 {
                                fn_ >>= 1;
                                sn >>= 1;
                            }
                        }
                    } else {
                        h = node_hash(&h, p);
                    }
                    fn_ >>= 1;
                    sn >>= 1;
                }
                assert_eq!(sn, 0);
                assert_eq!(h, mth(&lv), "inclusion {index} in {size}");
            }
        }
    }

    #[test]
    fn consistency_elements_match_rfc_lengths() {
        // RFC 9162 §2.1.4.2 examples: 1->8: 3, 6->8: 3, 2->5: 2, 6->7: 3.
        for (m, n, len) in [(1, 8, 3), (6, 8, 3), (2, 5, 2), (6, 7, 3), (4, 4, 0)] {
            assert_eq!(consistency_elements(m, n).unwrap().len(), len, "{m}->{n}");
        }
        assert!(consistency_elements(0, 4).is_err());
        assert!(consistency_elements(5, 4).is_err());
        assert!(inclusion_elements(4, 4).is_err());
    }

    #[test]
    fn tile_set_rejects_bad_tiles() {
        let mut set = TileSet::new(300);
        assert!(set.insert(0, 1, &[0u8; 31]).is_err());
        assert!(set.insert(0, 1, &[0u8; 32 * 43]).is_err());
        assert!(set.insert(0, 2, &[0u8; 32]).is_err());
        assert!(set.insert(0, 1, &[0u8; 32 * 44]).is_ok());
        assert!(set.node(0, 0).is_err());
        assert!(set.node(3, 37).is_err());
        assert!(set.node(0, 299).is_ok());
        assert!(check_hash_tile(&[]).is_err());
        assert!(check_hash_tile(&[0u8; 257 * 32]).is_err());
        assert!(tile_root(&[0u8; 33]).is_err());
    }

    #[test]
    fn elements_of_trees_past_two_to_the_63() {
        for (index, size) in [(0, u64::MAX), (1 << 63, u64::MAX), (u64::MAX - 1, u64::MAX)] {
            let els = inclusion_elements(index, size).unwrap();
            assert!(!els.is_empty() && els.len() <= 64, "{index} {size}");
            assert!(tiles_for_elements(&els, size).is_ok());
        }
        assert!(consistency_elements(1 << 63, u64::MAX).is_ok());
    }
}
