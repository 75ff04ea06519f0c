//! Merkle Tree Hash (RFC 6962 §2.1) of a list of leaf hashes, for any size.
//!
//! The root is computed over the perfect subtrees given by the set bits of
//! `n` (the compact range of `[0, n)`, RFC 6962 §2.1), each reduced in chunks of
//! 256 leaves through a fixed stack buffer, then folded right to left. Extra
//! memory is O(log n) regardless of `n`. Above [`PARALLEL_MIN_LEAVES`] perfect
//! subtrees are split in halves across a rayon pool.

use crate::error::{Error, Result};
use crate::hash::{hash_pairs, node_hash, reduce_in_place, Hash, EMPTY_ROOT};

/// Leaves reduced per chunk through a stack buffer (one tile width, c2sp.org/tlog-tiles).
const CHUNK: usize = 256;

/// Below this many leaves a subtree is hashed on the calling thread: splitting
/// smaller work costs more in scheduling than it saves.
pub const PARALLEL_MIN_LEAVES: usize = 1 << 15;

/// Largest power of two `<= n`, for `n > 0`.
#[inline]
fn floor_pow2(n: usize) -> usize {
    1usize << (usize::BITS - 1 - n.leading_zeros())
}

/// Root of a perfect subtree of up to [`CHUNK`] leaves (`leaves.len()` a power of two).
#[inline]
fn small_perfect_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let mut buf = [[0u8; 32]; CHUNK / 2];
            let half = n / 2;
            hash_pairs(leaves, &mut buf[..half]);
            reduce_in_place(&mut buf[..half])
        }
    }
}

/// Root of a perfect subtree (`leaves.len()` a power of two) on one thread.
fn perfect_root_seq(leaves: &[Hash]) -> Hash {
    if leaves.len() <= CHUNK {
        return small_perfect_root(leaves);
    }
    // A binary counter of chunk roots: at most one pending root per level.
    let mut stack = [[0u8; 32]; 64];
    let mut levels = [0u32; 64];
    let mut depth = 0usize;
    for chunk in leaves.chunks_exact(CHUNK) {
        let mut h = small_perfect_root(chunk);
        let mut level = 0u32;
        while depth > 0 && levels[depth - 1] == level {
            depth -= 1;
            h = node_hash(&stack[depth], &h);
            level += 1;
        }
        stack[depth] = h;
        levels[depth] = level;
        depth += 1;
    }
    stack[0]
}

/// Root of a perfect subtree, split in halves across the current rayon pool.
fn perfect_root_par(leaves: &[Hash]) -> Hash {
    if leaves.len() <= PARALLEL_MIN_LEAVES {
        return perfect_root_seq(leaves);
    }
    let (left, right) = leaves.split_at(leaves.len() / 2);
    let (l, r) = rayon::join(|| perfect_root_par(left), || perfect_root_par(right));
    node_hash(&l, &r)
}

fn root_impl(leaves: &[Hash], parallel: bool) -> Hash {
    if leaves.is_empty() {
        return EMPTY_ROOT;
    }
    // Perfect subtrees from the largest (left) to the smallest (right); fold
    // from the right, so keep them until the end (at most 64).
    let mut parts = [[0u8; 32]; 64];
    let mut count = 0usize;
    let mut rest = leaves;
    while !rest.is_empty() {
        let size = floor_pow2(rest.len());
        let (head, tail) = rest.split_at(size);
        parts[count] = if parallel {
            perfect_root_par(head)
        } else {
            perfect_root_seq(head)
        };
        count += 1;
        rest = tail;
    }
    let mut h = parts[count - 1];
    for part in parts[..count - 1].iter().rev() {
        h = node_hash(part, &h);
    }
    h
}

/// Merkle Tree Hash of `leaves` on the calling thread. `root(&[])` is [`EMPTY_ROOT`].
pub fn root(leaves: &[Hash]) -> Hash {
    root_impl(leaves, false)
}

/// Merkle Tree Hash of `leaves` with up to `threads` threads (`None`: all cores).
///
/// Small inputs stay on the calling thread whatever `threads` says.
pub fn root_with_threads(leaves: &[Hash], threads: Option<usize>) -> Result<Hash> {
    if leaves.len() <= PARALLEL_MIN_LEAVES || threads == Some(1) {
        check_threads(threads)?;
        return Ok(root(leaves));
    }
    with_threads(threads, || root_impl(leaves, true))
}

/// Most worker threads a call may ask for: far above any core count, far
/// below what would exhaust the process (a hostile `threads=2**40`).
pub const MAX_THREADS: usize = 1024;

/// Checks a requested thread count: `None` (every core) or `1..=MAX_THREADS`.
pub fn check_threads(threads: Option<usize>) -> Result<()> {
    match threads {
        Some(0) => Err(Error::InvalidArgument("threads must be at least 1".into())),
        Some(n) if n > MAX_THREADS => Err(Error::InvalidArgument(format!(
            "threads {n} is above the limit of {MAX_THREADS}"
        ))),
        _ => Ok(()),
    }
}

/// Runs `f` inside a rayon pool of `threads` threads (`None`: the global pool, one per core).
///
/// A pool is built only when a specific count other than the global pool's is asked for.
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    check_threads(threads)?;
    match threads {
        Some(n) if n != rayon::current_num_threads() => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("cannot start {n} threads: {e}")))?;
            Ok(pool.install(f))
        }
        _ => Ok(f()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// The recursive RFC 6962 §2.1 definition, as the reference.
    pub(crate) fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = floor_pow2(n - 1);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    pub(crate) fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn root_matches_recursive_definition_for_small_sizes() {
        let all = leaves(1100);
        for n in (0..300).chain([511, 512, 513, 1023, 1024, 1025, 1100]) {
            assert_eq!(root(&all[..n]), mth(&all[..n]), "n = {n}");
        }
    }

    #[test]
    fn parallel_root_matches_sequential() {
        let all = leaves(3 * PARALLEL_MIN_LEAVES + 12345);
        for n in [PARALLEL_MIN_LEAVES + 1, 2 * PARALLEL_MIN_LEAVES, all.len()] {
            let seq = root(&all[..n]);
            assert_eq!(root_with_threads(&all[..n], None).unwrap(), seq);
            assert_eq!(root_with_threads(&all[..n], Some(2)).unwrap(), seq);
            assert_eq!(root_with_threads(&all[..n], Some(3)).unwrap(), seq);
        }
    }

    #[test]
    fn zero_threads_is_rejected() {
        assert!(root_with_threads(&leaves(3), Some(0)).is_err());
    }

    #[test]
    fn empty_tree_root() {
        assert_eq!(root(&[]), EMPTY_ROOT);
    }
}
