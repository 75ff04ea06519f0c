//! `TileAppender`: the right edge of a tiled log, for log servers.
//!
//! The edge is the partial tile at each level (fewer than 256 hashes). Those
//! hashes are exactly the tree's compact range grouped by tile, so they are
//! all a writer needs to extend the tree and to compute its root.

use crate::error::{Error, Result};
use crate::hash::{Hash, EMPTY_ROOT};
use crate::tiles::{
    fold_right, mth_of_concat, partial_width, TileId, FULL_TILE_BYTES, MAX_TILE_LEVEL, TILE_WIDTH,
};

/// Levels a 64-bit tree can reach: 256^8 = 2^64.
const LEVELS: usize = 8;

/// A tile a batch created or changed, with its full new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchedTile {
    pub id: TileId,
    pub data: Vec<u8>,
}

/// The right edge of a tiled log, per level.
#[derive(Debug, Clone)]
pub struct TileAppender {
    size: u64,
    /// `edge[l]`: concatenated hashes of the partial tile at level l (< 256 of them).
    edge: [Vec<u8>; LEVELS],
}

impl Default for TileAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl TileAppender {
    /// An empty log.
    pub fn new() -> Self {
        TileAppender {
            size: 0,
            edge: Default::default(),
        }
    }

    /// Resumes a log of `size` from its partial tiles: `edge` maps a level to the
    /// partial tile's bytes. Every level with a non-zero partial width for
    /// `size` must be given with exactly that width; no other level may be.
    pub fn from_edge(size: u64, edge: &[(u64, &[u8])]) -> Result<Self> {
        let mut app = TileAppender {
            size,
            edge: Default::default(),
        };
        let mut given = [false; LEVELS];
        for &(level, data) in edge {
            let l = usize::try_from(level)
                .ok()
                .filter(|&l| l < LEVELS)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("edge tile level {level} is above 7"))
                })?;
            if given[l] {
                return Err(Error::InvalidArgument(format!(
                    "edge tile level {level} given twice"
                )));
            }
            given[l] = true;
            let want = partial_width(level, size) as usize;
            if data.len() != want * 32 {
                return Err(Error::Malformed {
                    what: "edge tile",
                    at: format!("level {level}"),
                    reason: format!(
                        "{} bytes; a tree of size {size} has a partial tile of {want} hashes ({} bytes) here",
                        data.len(),
                        want * 32
                    ),
                });
            }
            app.edge[l].extend_from_slice(data);
        }
        for (l, g) in given.iter().enumerate() {
            let w = partial_width(l as u64, size);
            if w > 0 && !g {
                return Err(Error::InvalidArgument(format!(
                    "tree size {size} has a partial tile of width {w} at level {l}, but none was given"
                )));
            }
        }
        Ok(app)
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current partial tiles, `(level, bytes)`, lowest level first.
    pub fn edge(&self) -> Vec<(u64, &[u8])> {
        (0..LEVELS)
            .filter(|&l| !self.edge[l].is_empty())
            .map(|l| (l as u64, self.edge[l].as_slice()))
            .collect()
    }

    /// Appends leaf hashes. Returns every tile the batch created or changed
    /// (full tiles completed, and the final partial tile of each level that
    /// changed), each with its whole content, sorted by level then index.
    pub fn append(&mut self, leaves: &[Hash]) -> Result<Vec<TouchedTile>> {
        let n = leaves.len() as u64;
        let new_size = self.size.checked_add(n).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "appending {n} leaves overflows a tree of size {}",
                self.size
            ))
        })?;
        let mut out = Vec::new();
        let mut dirty = [false; LEVELS];
        // Hashes at level l so far = size >> 8l; the next full tile at l gets index count/256.
        let mut counts = [0u64; LEVELS];
        for (l, c) in counts.iter_mut().enumerate() {
            *c = self.size >> (8 * l);
        }
        for leaf in leaves {
            let mut h = *leaf;
            let mut l = 0;
            loop {
                self.edge[l].extend_from_slice(&h);
                counts[l] += 1;
                dirty[l] = true;
                if self.edge[l].len() < FULL_TILE_BYTES {
                    break;
                }
                let full =
                    std::mem::replace(&mut self.edge[l], Vec::with_capacity(FULL_TILE_BYTES));
                h = mth_of_concat(&full);
                out.push(TouchedTile {
                    id: TileId {
                        level: l as u64,
                        index: counts[l] / TILE_WIDTH - 1,
                        width: TILE_WIDTH,
                    },
                    data: full,
                });
                if l + 1 >= LEVELS {
                    // Only a tree of exactly 2^64 leaves fills level 7; new_size rules it out.
                    break;
                }
                l += 1;
            }
        }
        self.size = new_size;
        for (l, d) in dirty.iter().enumerate() {
            if *d && !self.edge[l].is_empty() {
                let width = (self.edge[l].len() / 32) as u64;
                out.push(TouchedTile {
                    id: TileId {
                        level: l as u64,
                        index: counts[l] / TILE_WIDTH,
                        width,
                    },
                    data: self.edge[l].clone(),
                });
            }
        }
        out.sort_by_key(|t| (t.id.level, t.id.index));
        Ok(out)
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        if self.size == 0 {
            return EMPTY_ROOT;
        }
        root_from_edge(
            self.edge
                .iter()
                .enumerate()
                .map(|(l, e)| (l as u64, e.as_slice())),
        )
    }
}

/// The root of a tree from its partial tiles (any order). Each partial tile's
/// hashes split by the set bits of its width into perfect subtrees; together,
/// high levels first, they are the tree's compact range (RFC 6962 §2.1, §6.5).
pub fn root_from_edge<'a>(edge: impl Iterator<Item = (u64, &'a [u8])>) -> Hash {
    let mut by_level: Vec<(u64, &[u8])> = edge.filter(|(_, d)| !d.is_empty()).collect();
    by_level.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut nodes = Vec::with_capacity(64);
    for (_, data) in by_level {
        let w = data.len() / 32;
        let mut pos = 0usize;
        for b in (0..8).rev() {
            if w & (1 << b) != 0 {
                let end = pos + (1 << b);
                nodes.push(mth_of_concat(&data[pos * 32..end * 32]));
                pos = end;
            }
        }
    }
    fold_right(nodes.into_iter())
}

// Keeps MAX_TILE_LEVEL and LEVELS in step: levels 8..=63 exist only as path syntax.
const _: () = assert!(MAX_TILE_LEVEL >= LEVELS as u64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, node_hash};
    use std::collections::HashMap;

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

    #[test]
    fn batches_give_the_same_tiles_and_roots() {
        let leaves: Vec<Hash> = (0..70000u32)
            .map(|i| leaf_hash(i.to_string().as_bytes()))
            .collect();
        let mut one = TileAppender::new();
        let mut tiles_one: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        for t in one.append(&leaves).unwrap() {
            tiles_one.insert((t.id.level, t.id.index), t.data);
        }
        assert_eq!(one.root(), mth(&leaves));
        assert_eq!(tiles_one[&(2, 0)].len(), 32);
        assert_eq!(tiles_one[&(1, 1)].len(), 17 * 32);

        let mut many = TileAppender::new();
        let mut tiles_many: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut at = 0usize;
        for step in [1usize, 254, 1, 256, 3000, 7, 65000, 10000] {
            let end = (at + step).min(leaves.len());
            for t in many.append(&leaves[at..end]).unwrap() {
                tiles_many.insert((t.id.level, t.id.index), t.data);
            }
            at = end;
            assert_eq!(many.root(), mth(&leaves[..at]), "size {at}");
            // Resuming from the edge gives the same state.
            let edge: Vec<(u64, Vec<u8>)> = many
                .edge()
                .into_iter()
                .map(|(l, d)| (l, d.to_vec()))
                .collect();
            let refs: Vec<(u64, &[u8])> = edge.iter().map(|(l, d)| (*l, d.as_slice())).collect();
            let resumed = TileAppender::from_edge(at as u64, &refs).unwrap();
            assert_eq!(resumed.root(), many.root());
        }
        assert_eq!(at, leaves.len());
        assert_eq!(tiles_one, tiles_many);
        assert!(many.append(&[]).unwrap().is_empty());
    }

    #[test]
    fn from_edge_checks_widths() {
        assert!(TileAppender::from_edge(3, &[]).is_err());
        assert!(TileAppender::from_edge(3, &[(0, &[0u8; 64])]).is_err());
        assert!(TileAppender::from_edge(3, &[(0, &[0u8; 96]), (1, &[0u8; 32])]).is_err());
        assert!(TileAppender::from_edge(3, &[(0, &[0u8; 96]), (0, &[0u8; 96])]).is_err());
        assert!(TileAppender::from_edge(3, &[(9, &[])]).is_err());
        assert_eq!(TileAppender::from_edge(0, &[]).unwrap().root(), EMPTY_ROOT);
    }
}
