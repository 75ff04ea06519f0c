//! Compact ranges: the perfect subtrees that exactly cover leaves `[begin, end)`.
//!
//! A compact range stores at most two nodes per level, so an append-only log,
//! or a worker hashing one slice of a larger range, keeps O(log n) state.
//! Adjacent ranges merge into one; a range starting at 0 yields the tree root
//! (RFC 6962 §2.1: fold the nodes from the right).

use crate::error::{Error, Result};
use crate::hash::{node_hash, Hash, EMPTY_ROOT};
use crate::tree;

/// Node sizes (as bit masks of levels) of the compact range `[begin, end)`.
///
/// `left` holds the levels of the nodes on the left edge (listed from low to
/// high levels), `right` those on the right edge (listed from high to low).
pub fn decompose(begin: u64, end: u64) -> (u64, u64) {
    if begin == 0 || begin >= end {
        return (0, if begin == 0 { end } else { 0 });
    }
    let xbegin = begin - 1;
    // The highest level where begin-1 and end differ bounds both edges.
    let d = 63 - (xbegin ^ end).leading_zeros();
    let mask = (1u64 << d) - 1;
    (!xbegin & mask, end & mask)
}

/// Levels of the nodes of `[begin, end)`, left to right.
fn node_levels(begin: u64, end: u64) -> impl Iterator<Item = u32> {
    let (left, right) = decompose(begin, end);
    let lefts = (0..64u32).filter(move |l| left >> l & 1 == 1);
    let rights = (0..64u32).rev().filter(move |l| right >> l & 1 == 1);
    lefts.chain(rights)
}

/// A compact Merkle range over leaves `[begin, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactRange {
    begin: u64,
    end: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// An empty range starting at leaf `begin`.
    pub fn new(begin: u64) -> Self {
        CompactRange {
            begin,
            end: begin,
            hashes: Vec::new(),
        }
    }

    /// Restores a range from its node hashes (as returned by [`CompactRange::hashes`]).
    pub fn from_parts(begin: u64, end: u64, hashes: Vec<Hash>) -> Result<Self> {
        if end < begin {
            return Err(Error::InvalidArgument(format!(
                "compact range end {end} is before begin {begin}"
            )));
        }
        let want = node_levels(begin, end).count();
        if hashes.len() != want {
            return Err(Error::Malformed {
                what: "compact range",
                at: format!("[{begin}, {end})"),
                reason: format!("needs {want} node hashes, got {}", hashes.len()),
            });
        }
        Ok(CompactRange { begin, end, hashes })
    }

    /// First leaf index covered.
    pub fn begin(&self) -> u64 {
        self.begin
    }

    /// One past the last leaf index covered.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The node hashes, left to right.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends the perfect node at `level` that starts at `self.end`.
    ///
    /// The caller guarantees `self.end` is a multiple of `2^level`.
    fn append_node(&mut self, level: u32, hash: Hash) -> Result<()> {
        let width = 1u64 << level;
        let new_end = self.end.checked_add(width).ok_or_else(|| {
            Error::InvalidArgument("compact range would exceed 2^64 leaves".into())
        })?;
        let mut h = hash;
        let mut level = level;
        let mut pos = self.end >> level;
        // Merge with the left sibling while it is complete and inside the range.
        while pos & 1 == 1 && level < 63 && ((pos - 1) << level) >= self.begin {
            match self.hashes.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            pos >>= 1;
            level += 1;
        }
        self.hashes.push(h);
        self.end = new_end;
        Ok(())
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) -> Result<()> {
        self.append_node(0, leaf)
    }

    /// Appends many leaf hashes, hashing aligned perfect runs in bulk.
    pub fn extend(&mut self, leaves: &[Hash]) -> Result<()> {
        let mut rest = leaves;
        while !rest.is_empty() {
            // The largest perfect node that starts at `end` and fits in `rest`.
            let align = if self.end == 0 {
                63
            } else {
                self.end.trailing_zeros()
            };
            let fit = 63 - (rest.len() as u64).leading_zeros();
            let level = align.min(fit);
            let size = 1usize << level;
            let (head, tail) = rest.split_at(size);
            self.append_node(level, tree::root(head))?;
            rest = tail;
        }
        Ok(())
    }

    /// Appends the adjacent range `other`, which must begin where this one ends.
    pub fn merge(&mut self, other: &CompactRange) -> Result<()> {
        if other.begin != self.end {
            return Err(Error::InvalidArgument(format!(
                "cannot merge range [{}, {}) after [{}, {}): not adjacent",
                other.begin, other.end, self.begin, self.end
            )));
        }
        for (level, hash) in node_levels(other.begin, other.end).zip(&other.hashes) {
            self.append_node(level, *hash)?;
        }
        Ok(())
    }

    /// The tree root of leaves `[0, end)`; only a range that begins at 0 has one.
    pub fn root(&self) -> Result<Hash> {
        if self.begin != 0 {
            return Err(Error::InvalidArgument(format!(
                "a root needs a range starting at 0, this one starts at {}",
                self.begin
            )));
        }
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return Ok(EMPTY_ROOT);
        };
        Ok(iter.fold(*last, |acc, h| node_hash(h, &acc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{leaves, mth};

    #[test]
    fn appended_ranges_give_the_tree_root() {
        let all = leaves(200);
        let mut r = CompactRange::new(0);
        assert_eq!(r.root().unwrap(), EMPTY_ROOT);
        for (n, leaf) in all.iter().enumerate() {
            r.append(*leaf).unwrap();
            assert_eq!(r.root().unwrap(), mth(&all[..=n]), "n = {}", n + 1);
            assert_eq!(r.hashes().len(), (n as u64 + 1).count_ones() as usize);
        }
    }

    #[test]
    fn split_ranges_merge_to_the_same_root() {
        let all = leaves(130);
        for split in 0..=130usize {
            for split2 in [split, (split + 7).min(130), 130] {
                let mut a = CompactRange::new(0);
                a.extend(&all[..split]).unwrap();
                let mut b = CompactRange::new(split as u64);
                b.extend(&all[split..split2]).unwrap();
                let mut c = CompactRange::new(split2 as u64);
                for leaf in &all[split2..] {
                    c.append(*leaf).unwrap();
                }
                assert_eq!(
                    b.hashes().len(),
                    node_levels(split as u64, split2 as u64).count()
                );
                b.merge(&c).unwrap();
                a.merge(&b).unwrap();
                assert_eq!(a.end(), 130);
                assert_eq!(a.root().unwrap(), mth(&all), "split {split} {split2}");
            }
        }
    }

    #[test]
    fn restore_round_trips_and_checks_counts() {
        let all = leaves(77);
        let mut r = CompactRange::new(5);
        r.extend(&all[5..77]).unwrap();
        let again = CompactRange::from_parts(5, 77, r.hashes().to_vec()).unwrap();
        assert_eq!(again, r);
        assert!(CompactRange::from_parts(5, 77, vec![]).is_err());
        assert!(CompactRange::from_parts(9, 3, vec![]).is_err());
        assert!(r.root().is_err());
    }

    #[test]
    fn non_adjacent_merge_is_rejected() {
        let mut a = CompactRange::new(0);
        a.extend(&leaves(3)).unwrap();
        let b = CompactRange::new(4);
        assert!(a.merge(&b).is_err());
    }
}
