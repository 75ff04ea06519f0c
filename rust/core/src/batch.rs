//! Batch leaf hashing (RFC 6962 §2.1 `H(0x00 || entry)`) over many entries at once.
//!
//! Entries come either as a list of slices or as one buffer with `n + 1`
//! offsets (entry `i` is `buf[offsets[i]..offsets[i + 1]]`), the layout Arrow
//! and numpy users already have. Large batches are split across a rayon pool.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::{leaf_hash, leaf_hash_x2, Hash};
use crate::tree::{check_threads, with_threads};

/// Below this many bytes a batch is hashed on the calling thread.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Entries per rayon task.
const GRAIN: usize = 256;

/// Hashes entries `lo..lo + out.len()` into `out`, two at a time.
fn hash_range<'a, F>(entry: &F, lo: usize, out: &mut [Hash])
where
    F: Fn(usize) -> &'a [u8],
{
    let mut pairs = out.chunks_exact_mut(2);
    let mut i = lo;
    for dst in &mut pairs {
        let [a, b] = leaf_hash_x2(entry(i), entry(i + 1));
        dst[0] = a;
        dst[1] = b;
        i += 2;
    }
    if let [last] = pairs.into_remainder() {
        *last = leaf_hash(entry(i));
    }
}

fn hash_all<'a, F>(
    n: usize,
    total_bytes: usize,
    threads: Option<usize>,
    entry: F,
) -> Result<Vec<Hash>>
where
    F: Fn(usize) -> &'a [u8] + Sync,
{
    check_threads(threads)?;
    let mut out = vec![[0u8; 32]; n];
    if total_bytes < PARALLEL_MIN_BYTES || n < 2 * GRAIN || threads == Some(1) {
        hash_range(&entry, 0, &mut out);
        return Ok(out);
    }
    with_threads(threads, || {
        out.par_chunks_mut(GRAIN)
            .enumerate()
            .for_each(|(c, chunk)| hash_range(&entry, c * GRAIN, chunk));
    })?;
    Ok(out)
}

/// Leaf hashes of `entries`, in order.
pub fn hash_leaves(entries: &[&[u8]], threads: Option<usize>) -> Result<Vec<Hash>> {
    let total = entries
        .iter()
        .map(|e| e.len())
        .fold(0usize, usize::saturating_add);
    hash_all(entries.len(), total, threads, |i| entries[i])
}

/// Checks `offsets` against a buffer of `len` bytes and returns them as usize.
fn check_offsets(offsets: &[u64], len: usize) -> Result<Vec<usize>> {
    if offsets.is_empty() {
        return Err(Error::Malformed {
            what: "entry offsets",
            at: "length".into(),
            reason: "need n + 1 offsets (at least one)".into(),
        });
    }
    let mut out = Vec::with_capacity(offsets.len());
    let mut prev = 0usize;
    for (i, &o) in offsets.iter().enumerate() {
        let o = usize::try_from(o).unwrap_or(usize::MAX);
        if o > len {
            return Err(Error::Malformed {
                what: "entry offsets",
                at: format!("index {i}"),
                reason: format!("offset {o} is past the end of the {len}-byte buffer"),
            });
        }
        if i > 0 && o < prev {
            return Err(Error::Malformed {
                what: "entry offsets",
                at: format!("index {i}"),
                reason: format!("offset {o} is below the previous offset {prev}"),
            });
        }
        prev = o;
        out.push(o);
    }
    Ok(out)
}

/// Leaf hashes of the entries `buf[offsets[i]..offsets[i + 1]]`.
pub fn hash_leaves_buffer(
    buf: &[u8],
    offsets: &[u64],
    threads: Option<usize>,
) -> Result<Vec<Hash>> {
    let offs = check_offsets(offsets, buf.len())?;
    let n = offs.len() - 1;
    let total = offs[n] - offs[0];
    hash_all(n, total, threads, |i| &buf[offs[i]..offs[i + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_buffer_forms_agree() {
        let entries: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; (i % 800) as usize])
            .collect();
        let slices: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
        let mut buf = Vec::new();
        let mut offsets = vec![0u64];
        for e in &entries {
            buf.extend_from_slice(e);
            offsets.push(buf.len() as u64);
        }
        let want: Vec<Hash> = slices.iter().map(|e| leaf_hash(e)).collect();
        assert_eq!(hash_leaves(&slices, Some(1)).unwrap(), want);
        assert_eq!(hash_leaves(&slices, None).unwrap(), want);
        assert_eq!(hash_leaves_buffer(&buf, &offsets, Some(2)).unwrap(), want);
    }

    #[test]
    fn bad_offsets_name_the_index() {
        let err = hash_leaves_buffer(b"abcdef", &[0, 4, 2], None).unwrap_err();
        assert!(err.to_string().contains("index 2"), "{err}");
        let err = hash_leaves_buffer(b"abcdef", &[0, 7], None).unwrap_err();
        assert!(err.to_string().contains("index 1"), "{err}");
        assert!(hash_leaves_buffer(b"abc", &[], None).is_err());
        assert_eq!(
            hash_leaves_buffer(b"abc", &[2], None).unwrap(),
            Vec::<Hash>::new()
        );
    }
}
