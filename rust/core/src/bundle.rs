//! C2SP entry bundles (c2sp.org/tlog-tiles): `uint16_be(len) || entry` per entry,
//! for the entries of one level-0 tile. Parsed strictly in one pass, hashed
//! as RFC 6962 leaves, and checked against hash tiles.

use crate::error::{Error, Result};
use crate::hash::{leaf_hash, leaf_hash_x2, Hash};
use crate::tiles::{check_hash_tile, mth_of_concat, tile_hash, FULL_TILE_BYTES, TILE_WIDTH};
use crate::tree::{check_threads, with_threads};

/// Largest entry a bundle can hold (c2sp.org/tlog-tiles: a uint16 length).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;
/// Most entries one bundle holds: one per hash of its level-0 tile.
pub const MAX_BUNDLE_ENTRIES: usize = TILE_WIDTH as usize;

fn malformed(at: String, reason: String) -> Error {
    Error::Malformed {
        what: "entry bundle",
        at,
        reason,
    }
}

/// Reads entry `n` of `data`, whose length prefix starts at `off`: the entry
/// and the offset just past it. The error names the byte offset and entry.
fn entry_at(data: &[u8], off: usize, n: usize) -> Result<(&[u8], usize)> {
    let Some(prefix) = data.get(off..off + 2) else {
        return Err(malformed(
            format!("byte {off}, entry {n}"),
            "dangling length byte: a length prefix needs 2 bytes, 1 remains".into(),
        ));
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    let start = off + 2;
    let Some(entry) = data.get(start..start + len) else {
        return Err(malformed(
            format!("byte {off}, entry {n}"),
            format!(
                "length {len} runs past the end: {} bytes remain",
                data.len() - start
            ),
        ));
    };
    Ok((entry, start + len))
}

/// Walks the bundle, calling `f(entry_number, entry)` for each entry in order.
/// Every error names the byte offset and the entry number.
fn walk<'a>(data: &'a [u8], mut f: impl FnMut(usize, &'a [u8])) -> Result<usize> {
    let mut off = 0usize;
    let mut n = 0usize;
    while off < data.len() {
        if n == MAX_BUNDLE_ENTRIES {
            return Err(malformed(
                format!("byte {off}, entry {n}"),
                format!("more than {MAX_BUNDLE_ENTRIES} entries"),
            ));
        }
        let (entry, next) = entry_at(data, off, n)?;
        f(n, entry);
        off = next;
        n += 1;
    }
    Ok(n)
}

/// Length of the prefix of `data` that holds exactly its first `count`
/// entries (a full bundle served where a partial one was asked for is cut
/// to this length). Entries after `count` are not looked at.
pub fn prefix_len(data: &[u8], count: usize) -> Result<usize> {
    let mut off = 0usize;
    for n in 0..count {
        if off == data.len() {
            return Err(malformed(
                format!("byte {off}, entry {n}"),
                format!("the bundle ends after {n} entries, {count} expected"),
            ));
        }
        off = entry_at(data, off, n)?.1;
    }
    Ok(off)
}

/// The entries of consecutive bundles, without their length prefixes, as
/// one buffer and `take + 1` offsets into it (the Arrow binary layout),
/// skipping the first `skip` entries. Errors name the bundle, byte and entry.
pub fn entry_columns(bundles: &[&[u8]], skip: usize, take: usize) -> Result<(Vec<u8>, Vec<u64>)> {
    // `skip` and `take` come from the caller: check them against what the
    // bundles can hold before anything is allocated for them.
    let room = bundles.len().saturating_mul(MAX_BUNDLE_ENTRIES);
    let wanted = skip.checked_add(take).filter(|&w| w <= room);
    let Some(wanted) = wanted else {
        return Err(Error::InvalidArgument(format!(
            "{skip} skipped + {take} taken entries: {} bundles hold at most {room}",
            bundles.len()
        )));
    };
    let mut spans: Vec<&[u8]> = Vec::with_capacity(take);
    let mut seen = 0usize;
    for (b, data) in bundles.iter().enumerate() {
        if spans.len() == take {
            break;
        }
        walk(data, |_, e| {
            if seen >= skip && spans.len() < take {
                spans.push(e);
            }
            seen += 1;
        })
        .map_err(|e| match e {
            Error::Malformed { what, at, reason } => Error::Malformed {
                what,
                at: format!("bundle {b} of the group, {at}"),
                reason,
            },
            other => other,
        })?;
    }
    if spans.len() < take {
        return Err(Error::InvalidArgument(format!(
            "the bundles hold {seen} entries; {skip} skipped + {take} taken needs {wanted}"
        )));
    }
    // At most 256 entries of 65,535 bytes per bundle, held in memory already: no overflow.
    let total: usize = spans.iter().map(|e| e.len()).sum();
    let mut data = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(take + 1);
    offsets.push(0u64);
    for e in spans {
        data.extend_from_slice(e);
        offsets.push(data.len() as u64);
    }
    Ok((data, offsets))
}

/// Parses a bundle into the byte ranges `(start, end)` of its entries.
pub fn parse_spans(data: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut spans = Vec::with_capacity(MAX_BUNDLE_ENTRIES.min(data.len() / 2 + 1));
    let base = data.as_ptr() as usize;
    walk(data, |_, e| {
        let s = e.as_ptr() as usize - base;
        spans.push((s, s + e.len()));
    })?;
    Ok(spans)
}

/// Parses a bundle into its entries (borrowed, no copy).
pub fn parse(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    walk(data, |_, e| out.push(e))?;
    Ok(out)
}

/// Leaf hashes of `entries`, two at a time (interleaved SHA-256 where the CPU allows).
fn hash_entries(entries: &[&[u8]], mut f: impl FnMut(usize, Hash) -> bool) {
    let mut j = 0;
    for pair in entries.chunks(2) {
        let stop = match pair {
            [a, b] => {
                let [ha, hb] = leaf_hash_x2(a, b);
                f(j, ha) || f(j + 1, hb)
            }
            [a] => f(j, leaf_hash(a)),
            _ => false,
        };
        if stop {
            return;
        }
        j += pair.len();
    }
}

/// Parses and leaf-hashes a bundle.
pub fn hash_bundle(data: &[u8]) -> Result<Vec<Hash>> {
    let entries = parse(data)?;
    let mut out = Vec::with_capacity(entries.len());
    hash_entries(&entries, |_, h| {
        out.push(h);
        false
    });
    Ok(out)
}

/// Parses and leaf-hashes a bundle into `out` as concatenated hashes; returns the count.
pub fn hash_bundle_into(data: &[u8], out: &mut Vec<u8>) -> Result<usize> {
    let entries = parse(data)?;
    out.reserve(entries.len() * 32);
    hash_entries(&entries, |_, h| {
        out.extend_from_slice(&h);
        false
    });
    Ok(entries.len())
}

/// Encodes entries as a bundle. At most 256 entries, each at most 65,535 bytes.
pub fn encode<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>> {
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(Error::InvalidArgument(format!(
            "{} entries; a bundle holds at most {MAX_BUNDLE_ENTRIES}",
            entries.len()
        )));
    }
    let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
    let mut out = Vec::with_capacity(total);
    for (i, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "entry {i} is {} bytes; a bundle entry is at most {MAX_ENTRY_LEN}",
                e.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Checks that level-0 tile `tile_index` holds exactly the leaf hashes of
/// `bundle`, in order. The error names the first mismatching position.
pub fn verify_against_tile(bundle: &[u8], tile: &[u8], tile_index: u64) -> Result<()> {
    // In a batch the caller needs to know which bundle or tile did not parse.
    let locate = |prefix: String| {
        move |e: Error| match e {
            Error::Malformed { what, at, reason } => Error::Malformed {
                what,
                at: format!("{prefix}, {at}"),
                reason,
            },
            other => other,
        }
    };
    let width = check_hash_tile(tile).map_err(locate(format!("tile 0/{tile_index}")))?;
    let entries = parse(bundle).map_err(locate(format!("bundle {tile_index}")))?;
    let n = entries.len();
    let mut mismatch: Option<(usize, Hash, Hash)> = None;
    let common = n.min(width as usize);
    hash_entries(&entries[..common], |j, actual| match tile_hash(tile, j) {
        Some(expected) if expected == actual => false,
        Some(expected) => {
            mismatch = Some((j, expected, actual));
            true
        }
        None => true,
    });
    if let Some((j, expected, actual)) = mismatch {
        return Err(Error::TileHash {
            level: 0,
            index: tile_index,
            position: Some(j as u64),
            expected,
            actual,
            reason: format!(
                "leaf hash of entry {j} (log index {}) differs from the tile",
                tile_index
                    .saturating_mul(TILE_WIDTH)
                    .saturating_add(j as u64)
            ),
        });
    }
    if n as u64 != width {
        return Err(Error::Tile {
            level: 0,
            index: tile_index,
            position: Some(common as u64),
            reason: format!("bundle holds {n} entries but the tile holds {width} hashes"),
        });
    }
    Ok(())
}

/// Checks many `(bundle, tile, tile_index)` triples in parallel. The error
/// is the one of the first failing triple in input order.
/// `threads`: `None` uses every core, `Some(1)` the calling thread only.
pub fn verify_many_against_tiles(
    items: &[(&[u8], &[u8], u64)],
    threads: Option<usize>,
) -> Result<()> {
    use rayon::prelude::*;
    check_threads(threads)?;
    let check =
        |&(bundle, tile, index): &(&[u8], &[u8], u64)| verify_against_tile(bundle, tile, index);
    if threads == Some(1) || items.len() < 2 {
        return items
            .iter()
            .map(check)
            .find(|r| r.is_err())
            .unwrap_or(Ok(()));
    }
    with_threads(threads, || {
        items
            .par_iter()
            .map(check)
            .find_first(|r| r.is_err())
            .unwrap_or(Ok(()))
    })?
}

/// Checks that a full tile hashes to `parent_hash` (its hash in the tile one level up).
pub fn verify_tile_against_parent(
    tile: &[u8],
    parent_hash: &Hash,
    level: u64,
    index: u64,
) -> Result<()> {
    check_hash_tile(tile)?;
    if tile.len() != FULL_TILE_BYTES {
        return Err(Error::Tile {
            level,
            index,
            position: None,
            reason: format!(
                "holds {} hashes; only a full tile of 256 is hashed into its parent",
                tile.len() / 32
            ),
        });
    }
    let actual = mth_of_concat(tile);
    if &actual != parent_hash {
        return Err(Error::TileHash {
            level,
            index,
            position: None,
            expected: *parent_hash,
            actual,
            reason: "tile does not hash to its parent tile's hash".into(),
        });
    }
    Ok(())
}

/// Checks consecutive full tiles `(level, first_index + k)` against their
/// hashes in the parent tile(s), `parents[k]`, in parallel. The error is the
/// one of the first failing tile in order.
pub fn verify_many_against_parents(
    tiles: &[&[u8]],
    parents: &[Hash],
    level: u64,
    first_index: u64,
    threads: Option<usize>,
) -> Result<()> {
    use rayon::prelude::*;
    check_threads(threads)?;
    if tiles.len() != parents.len() {
        return Err(Error::InvalidArgument(format!(
            "{} tiles but {} parent hashes",
            tiles.len(),
            parents.len()
        )));
    }
    first_index.checked_add(tiles.len() as u64).ok_or_else(|| {
        Error::InvalidArgument(format!("tile indices from {first_index} overflow uint64"))
    })?;
    let check = |(k, (tile, parent)): (usize, (&&[u8], &Hash))| {
        verify_tile_against_parent(tile, parent, level, first_index + k as u64)
    };
    if threads == Some(1) || tiles.len() < 2 {
        return tiles
            .iter()
            .zip(parents)
            .enumerate()
            .map(check)
            .find(|r| r.is_err())
            .unwrap_or(Ok(()));
    }
    with_threads(threads, || {
        tiles
            .par_iter()
            .zip(parents.par_iter())
            .enumerate()
            .map(check)
            .find_first(|r| r.is_err())
            .unwrap_or(Ok(()))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let b = b"\x00\x03one\x00\x03two\x00\x05three";
        assert_eq!(parse(b).unwrap(), vec![&b"one"[..], b"two", b"three"]);
        assert_eq!(
            encode(&[b"one".as_slice(), b"two", b"three"]).unwrap(),
            b.to_vec()
        );
        assert_eq!(hash_bundle(b).unwrap()[1], leaf_hash(b"two"));
        assert_eq!(parse_spans(b).unwrap(), vec![(2, 5), (7, 10), (12, 17)]);
        assert!(parse(b"").unwrap().is_empty());
        assert_eq!(parse(b"\x00\x00").unwrap(), vec![&b""[..]]);
    }

    #[test]
    fn rejects_dangling_and_overlong_lengths() {
        let e = parse(b"\x00\x03one\x00").unwrap_err();
        assert_eq!(e.to_string(), "malformed entry bundle at byte 5, entry 1: dangling length byte: a length prefix needs 2 bytes, 1 remains");
        let e = parse(b"\x00\x03one\x00\x09two").unwrap_err();
        assert!(
            e.to_string()
                .contains("byte 5, entry 1: length 9 runs past the end: 3 bytes remain"),
            "{e}"
        );
        let many = vec![0u8; 2 * 257];
        assert!(parse(&many)
            .unwrap_err()
            .to_string()
            .contains("byte 512, entry 256"));
    }

    #[test]
    fn prefix_of_the_first_entries() {
        let b = b"\x00\x03one\x00\x03two\x00\x05three";
        assert_eq!(prefix_len(b, 0).unwrap(), 0);
        assert_eq!(prefix_len(b, 2).unwrap(), 10);
        assert_eq!(prefix_len(b, 3).unwrap(), b.len());
        let e = prefix_len(b, 4).unwrap_err().to_string();
        assert!(
            e.contains("byte 17, entry 3: the bundle ends after 3 entries, 4 expected"),
            "{e}"
        );
        // Entries past `count` are not parsed: a broken tail does not matter.
        assert_eq!(prefix_len(b"\x00\x01a\x00\x09", 1).unwrap(), 3);
        let e = prefix_len(b"\x00\x01a\x00\x09", 2).unwrap_err().to_string();
        assert!(
            e.contains("byte 3, entry 1: length 9 runs past the end"),
            "{e}"
        );
    }

    #[test]
    fn columns_of_several_bundles() {
        let a = encode(&[b"a0".as_slice(), b"a1", b"a2"]).unwrap();
        let b = encode(&[b"b0".as_slice(), b"", b"b2"]).unwrap();
        let (data, offsets) = entry_columns(&[&a, &b], 2, 3).unwrap();
        assert_eq!(data, b"a2b0".to_vec());
        assert_eq!(offsets, vec![0, 2, 4, 4]);
        let (data, offsets) = entry_columns(&[&a, &b], 0, 0).unwrap();
        assert!(data.is_empty() && offsets == vec![0]);
        let e = entry_columns(&[&a, &b], 4, 3).unwrap_err().to_string();
        assert!(
            e.contains("hold 6 entries; 4 skipped + 3 taken needs 7"),
            "{e}"
        );
        let e = entry_columns(&[&a, b"\x00\x05ab"], 0, 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bundle 1 of the group, byte 0, entry 0"), "{e}");
    }

    #[test]
    fn encode_limits() {
        assert!(encode(&[vec![0u8; 65536]]).is_err());
        assert!(encode(&vec![b"".as_slice(); 257]).is_err());
        assert!(encode(&[vec![7u8; 65535]]).is_ok());
    }

    #[test]
    fn bundle_against_tile() {
        let entries: Vec<Vec<u8>> = (0..5).map(|i: u32| i.to_string().into_bytes()).collect();
        let bundle = encode(&entries).unwrap();
        let tile: Vec<u8> = entries.iter().flat_map(|e| leaf_hash(e)).collect();
        verify_against_tile(&bundle, &tile, 3).unwrap();
        let mut bad = tile.clone();
        bad[2 * 32] ^= 1;
        match verify_against_tile(&bundle, &bad, 3).unwrap_err() {
            Error::TileHash {
                position, index, ..
            } => {
                assert_eq!((position, index), (Some(2), 3))
            }
            e => panic!("{e}"),
        }
        assert!(verify_against_tile(&bundle, &tile[..4 * 32], 3).is_err());
        let e = verify_against_tile(&bundle[..bundle.len() - 1], &tile, 3).unwrap_err();
        assert!(
            e.to_string().contains("at bundle 3, byte 12, entry 4"),
            "{e}"
        );
        let e = verify_against_tile(&bundle, &tile[..31], 3).unwrap_err();
        assert!(e.to_string().contains("at tile 0/3, byte 0"), "{e}");
        let mut longer = tile.clone();
        longer.extend_from_slice(&[0u8; 32]);
        assert!(verify_against_tile(&bundle, &longer, 3).is_err());
    }

    #[test]
    fn many_tiles_against_parents() {
        let tiles: Vec<Vec<u8>> = (0..4u32)
            .map(|t| {
                (0..256u32)
                    .flat_map(|i| leaf_hash(&(t * 256 + i).to_be_bytes()))
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = tiles.iter().map(Vec::as_slice).collect();
        let mut parents: Vec<Hash> = refs.iter().map(|t| mth_of_concat(t)).collect();
        verify_many_against_parents(&refs, &parents, 0, 8, None).unwrap();
        verify_many_against_parents(&refs, &parents, 0, 8, Some(1)).unwrap();
        parents[2][0] ^= 1;
        parents[3][0] ^= 1;
        match verify_many_against_parents(&refs, &parents, 0, 8, None).unwrap_err() {
            Error::TileHash { index, .. } => assert_eq!(index, 10),
            e => panic!("{e}"),
        }
        assert!(verify_many_against_parents(&refs, &parents[..3], 0, 8, None).is_err());
        assert!(verify_many_against_parents(&refs, &parents, 0, u64::MAX - 1, None).is_err());
    }

    #[test]
    fn tile_against_parent() {
        let tile: Vec<u8> = (0..256u32)
            .flat_map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let parent = mth_of_concat(&tile);
        verify_tile_against_parent(&tile, &parent, 0, 0).unwrap();
        assert!(verify_tile_against_parent(&tile, &[0u8; 32], 0, 0).is_err());
        assert!(verify_tile_against_parent(&tile[..32 * 255], &parent, 0, 0).is_err());
    }

    #[test]
    fn entry_columns_checks_skip_and_take_before_allocating() {
        let b = encode(&[b"x".as_slice()]).unwrap();
        for (skip, take) in [
            (0, 1usize << 31),
            (0, usize::MAX),
            (usize::MAX, 1),
            (200, 57),
        ] {
            let err = entry_columns(&[&b], skip, take).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(_)),
                "{skip} {take}: {err}"
            );
        }
        assert_eq!(entry_columns(&[&b], 0, 1).unwrap().1, vec![0, 1]);
    }

    #[test]
    fn batch_checks_refuse_absurd_thread_counts() {
        let b = encode(&[b"x".as_slice()]).unwrap();
        let tile = leaf_hash(b"x");
        for threads in [
            Some(0),
            Some(crate::tree::MAX_THREADS + 1),
            Some(usize::MAX),
        ] {
            assert!(verify_many_against_tiles(&[(&b, &tile, 0)], threads).is_err());
            assert!(verify_many_against_parents(&[], &[], 0, 0, threads).is_err());
        }
        assert!(verify_many_against_tiles(&[(&b, &tile, 0)], Some(2)).is_ok());
    }
}
