//! C2SP tlog-tiles coordinates (c2sp.org/tlog-tiles): paths, widths, the tiles a
//! tree size has, and hash-tile checks. Proofs from tiles: `tile_proof`.
//!
//! Tiles are untrusted input: every read is bounds-checked and a missing or
//! short tile is an error naming the tile, never a panic.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::hash::{node_hash, Hash, EMPTY_ROOT};
use crate::tree::root;

/// Tile height in tree levels (c2sp.org/tlog-tiles: fixed at 8).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile (c2sp.org/tlog-tiles: 2^8).
pub const TILE_WIDTH: u64 = 256;
/// Bytes of a full hash tile.
pub const FULL_TILE_BYTES: usize = 256 * 32;
/// Highest tile level a path may name (c2sp.org/tlog-tiles: `<L>` is 0..63).
pub const MAX_TILE_LEVEL: u64 = 63;

/// One tile: level `level`, index `index`, holding `width` hashes (256 = full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u64,
    pub index: u64,
    pub width: u64,
}

impl TileId {
    /// A tile ID, checked: level 0..=63 and width 1..=256.
    pub fn new(level: u64, index: u64, width: u64) -> Result<Self> {
        if level > MAX_TILE_LEVEL {
            return Err(Error::InvalidArgument(format!(
                "tile level {level} is above {MAX_TILE_LEVEL}"
            )));
        }
        check_width(width)?;
        Ok(TileId {
            level,
            index,
            width,
        })
    }

    /// Whether this is a partial (rightmost, `.p/W`) tile.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The hash-tile path, e.g. `tile/0/x001/234.p/5`.
    pub fn path(&self) -> String {
        let mut s = format!("tile/{}/", self.level);
        push_index_and_width(&mut s, self.index, self.width);
        s
    }

    /// The entry-bundle path of the level-0 tile with this index and width.
    pub fn entries_path(&self) -> String {
        let mut s = String::from("tile/entries/");
        push_index_and_width(&mut s, self.index, self.width);
        s
    }
}

fn check_width(width: u64) -> Result<()> {
    if width == 0 || width > TILE_WIDTH {
        return Err(Error::InvalidArgument(format!(
            "tile width {width} is outside 1..=256"
        )));
    }
    Ok(())
}

/// c2sp.org/tlog-tiles: 3-digit zero-padded groups, every group but the last prefixed `x`.
fn push_index_and_width(s: &mut String, index: u64, width: u64) {
    let mut groups = Vec::with_capacity(7);
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    for (k, g) in groups.iter().rev().enumerate() {
        if k + 1 < groups.len() {
            let _ = write!(s, "x{g:03}/");
        } else {
            let _ = write!(s, "{g:03}");
        }
    }
    if width < TILE_WIDTH {
        let _ = write!(s, ".p/{width}");
    }
}

fn malformed(at: String, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: "tile path",
        at,
        reason: reason.into(),
    }
}

/// A decimal with no sign, no leading zeros (except "0"), within u64.
fn parse_canonical_decimal(s: &str, field: &str) -> Result<u64> {
    if s.is_empty() {
        return Err(malformed(field.to_string(), "empty number"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            field.to_string(),
            format!("{s:?} is not a decimal number"),
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(malformed(
            field.to_string(),
            format!("{s:?} has a leading zero"),
        ));
    }
    s.parse::<u64>()
        .map_err(|_| malformed(field.to_string(), format!("{s:?} overflows uint64")))
}

/// Parses the `<N>[.p/<W>]` part, given as its `/`-separated components.
fn parse_index_and_width(parts: &[&str]) -> Result<(u64, u64)> {
    let (groups, width) = match parts {
        [head @ .., last_group, w] if last_group.ends_with(".p") => {
            let w = parse_canonical_decimal(w, "width")?;
            if w == 0 || w >= TILE_WIDTH {
                return Err(malformed(
                    "width".into(),
                    format!("partial width {w} is outside 1..=255 (a full tile has no .p/ suffix)"),
                ));
            }
            let stripped = &last_group[..last_group.len() - 2];
            let mut g: Vec<&str> = head.to_vec();
            g.push(stripped);
            (g, w)
        }
        _ => (parts.to_vec(), TILE_WIDTH),
    };
    if groups.is_empty() {
        return Err(malformed("index".into(), "missing tile index"));
    }
    let mut index: u64 = 0;
    let last = groups.len() - 1;
    for (k, g) in groups.iter().enumerate() {
        let digits = if k < last {
            g.strip_prefix('x').ok_or_else(|| {
                malformed(
                    format!("index group {k}"),
                    format!("{g:?} must start with 'x'"),
                )
            })?
        } else {
            if g.starts_with('x') {
                return Err(malformed(
                    format!("index group {k}"),
                    format!("last group {g:?} must not start with 'x'"),
                ));
            }
            g
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(
                format!("index group {k}"),
                format!("{g:?} is not three decimal digits"),
            ));
        }
        if k == 0 && k < last && digits == "000" {
            // x000/... would give a second spelling of a smaller index.
            return Err(malformed(
                "index group 0".into(),
                "leading x000 group is not canonical",
            ));
        }
        let v: u64 = digits
            .bytes()
            .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'));
        index = index
            .checked_mul(1000)
            .and_then(|i| i.checked_add(v))
            .ok_or_else(|| malformed("index".into(), "tile index overflows uint64"))?;
    }
    Ok((index, width))
}

/// Strictly parses a C2SP tile path (`tile/<L>/<N>[.p/<W>]` or
/// `tile/entries/<N>[.p/<W>]`). Returns the tile and whether it names an
/// entry bundle (then `level` is 0: bundle N matches level-0 tile N).
pub fn parse_tile_path(path: &str) -> Result<(TileId, bool)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["tile", kind, rest @ ..] => {
            if rest.is_empty() {
                return Err(malformed(
                    "index".into(),
                    format!("{path:?} has no tile index"),
                ));
            }
            let (is_entries, level) = if *kind == "entries" {
                (true, 0)
            } else {
                let level = parse_canonical_decimal(kind, "level")?;
                if level > MAX_TILE_LEVEL {
                    return Err(malformed(
                        "level".into(),
                        format!("level {level} is above {MAX_TILE_LEVEL}"),
                    ));
                }
                (false, level)
            };
            let (index, width) = parse_index_and_width(rest)?;
            Ok((
                TileId {
                    level,
                    index,
                    width,
                },
                is_entries,
            ))
        }
        _ => Err(malformed(
            "prefix".into(),
            format!("{path:?} does not start with \"tile/\""),
        )),
    }
}

/// Number of nodes at tree level `8*level` in a tree of `size` leaves.
#[inline]
fn nodes_at(level: u64, size: u64) -> u64 {
    // Levels >= 8 shift by >= 64 bits: no perfect node that high fits in u64.
    u32::try_from(level * u64::from(TILE_HEIGHT))
        .ok()
        .and_then(|sh| size.checked_shr(sh))
        .unwrap_or(0)
}

/// Width of the partial tile at `level` for tree `size` (0: none). c2sp.org/tlog-tiles.
pub fn partial_width(level: u64, size: u64) -> u64 {
    nodes_at(level, size) % TILE_WIDTH
}

/// Number of full tiles at `level` for tree `size`.
pub fn full_tiles(level: u64, size: u64) -> u64 {
    nodes_at(level, size) / TILE_WIDTH
}

/// Width of tile `(level, index)` in a tree of `size`; 0 if it does not exist.
pub fn tile_width(level: u64, index: u64, size: u64) -> u64 {
    let full = full_tiles(level, size);
    if index < full {
        TILE_WIDTH
    } else if index == full {
        partial_width(level, size)
    } else {
        0
    }
}

/// The partial tiles a tree of `size` has, one per level where its width is
/// non-zero: exactly the tiles its root is computed from (c2sp.org/tlog-tiles).
pub fn tiles_for_size(size: u64) -> Vec<TileId> {
    (0..=MAX_TILE_LEVEL)
        .take_while(|&l| nodes_at(l, size) > 0)
        .filter_map(|l| {
            let w = partial_width(l, size);
            (w > 0).then(|| TileId {
                level: l,
                index: full_tiles(l, size),
                width: w,
            })
        })
        .collect()
}

/// The right edge of a tree of `size` per level: the last full tile (if any)
/// and the partial tile (if any). This is the set a log writes last.
pub fn edge_tiles_for_size(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for l in (0..=MAX_TILE_LEVEL).take_while(|&l| nodes_at(l, size) > 0) {
        let full = full_tiles(l, size);
        if full > 0 {
            out.push(TileId {
                level: l,
                index: full - 1,
                width: TILE_WIDTH,
            });
        }
        let w = partial_width(l, size);
        if w > 0 {
            out.push(TileId {
                level: l,
                index: full,
                width: w,
            });
        }
    }
    out
}

/// Reads hash `j` of a hash tile, if present.
#[inline]
pub fn tile_hash(tile: &[u8], j: usize) -> Option<Hash> {
    let start = j.checked_mul(32)?;
    tile.get(start..start.checked_add(32)?)?.try_into().ok()
}

/// Checks a hash tile's length: a multiple of 32, 1..=256 hashes. Returns its width.
pub fn check_hash_tile(tile: &[u8]) -> Result<u64> {
    if tile.len() % 32 != 0 {
        return Err(Error::Malformed {
            what: "hash tile",
            at: format!("byte {}", tile.len() - tile.len() % 32),
            reason: format!("length {} is not a multiple of 32", tile.len()),
        });
    }
    let n = (tile.len() / 32) as u64;
    if n == 0 || n > TILE_WIDTH {
        return Err(Error::Malformed {
            what: "hash tile",
            at: "length".into(),
            reason: format!("{n} hashes; a tile holds 1..=256"),
        });
    }
    Ok(n)
}

/// Merkle Tree Hash of a list of hashes given as concatenated 32-byte values
/// (0 hashes give the empty-tree hash; a trailing partial hash is ignored).
pub fn mth_of_concat(hashes: &[u8]) -> Hash {
    let mut buf = [[0u8; 32]; TILE_WIDTH as usize];
    if hashes.len() <= FULL_TILE_BYTES {
        // Tiles and node spans: copy into a stack buffer, no allocation.
        let n = hashes.len() / 32;
        for (dst, src) in buf.iter_mut().zip(hashes.chunks_exact(32)) {
            dst.copy_from_slice(src);
        }
        return root(&buf[..n]);
    }
    let v: Vec<Hash> = hashes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    root(&v)
}

/// Folds a compact range (left to right) into its root, right to left (RFC 6962 §2.1).
pub fn fold_right(nodes: impl DoubleEndedIterator<Item = Hash>) -> Hash {
    let mut it = nodes.rev();
    match it.next() {
        None => EMPTY_ROOT,
        Some(last) => it.fold(last, |acc, left| node_hash(&left, &acc)),
    }
}

/// The hash a full tile contributes to the level above: the MTH of its 256
/// hashes. Also accepts partial tiles (their MTH, which is stored nowhere).
pub fn tile_root(tile: &[u8]) -> Result<Hash> {
    check_hash_tile(tile)?;
    Ok(mth_of_concat(tile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode() {
        assert_eq!(
            TileId::new(0, 1234067, 256).unwrap().path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(
            TileId::new(15, 123456789, 41).unwrap().path(),
            "tile/15/x123/x456/789.p/41"
        );
        assert_eq!(
            TileId::new(0, 5, 256).unwrap().entries_path(),
            "tile/entries/005"
        );
        assert!(TileId::new(64, 0, 256).is_err());
        assert!(TileId::new(0, 0, 0).is_err());
        assert!(TileId::new(0, 0, 257).is_err());
        let max = TileId::new(63, u64::MAX, 255).unwrap();
        assert_eq!(parse_tile_path(&max.path()).unwrap(), (max, false));
    }

    #[test]
    fn paths_reject_malformed() {
        for bad in [
            "tile/0/x001/x234/067.p/",
            "tile/0/x001/x234/067.p",
            "tile/0/x001/x234/",
            "tile/0/x001/x234",
            "tile/0/x001/",
            "tile/0/x001",
            "tile/1/x001/.p/abc",
            "tile/64/x001/002",
            "tile/-1/x001/002",
            "tile/abc/x001/002",
            "tile/8/001/002",
            "tile/8/x001/0002",
            "tile/8/x001/-002",
            "tile/8/x001/002.p/256",
            "tile/63/x999/x999/x999/x999/x999/x999/999.p/255",
            "tile/00/001",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/01",
            "tile/0/+01",
            "tile/0/",
            "tile/0",
            "tiles/0/000",
            "/tile/0/000",
            "tile/entries/",
        ] {
            assert!(parse_tile_path(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(
            parse_tile_path("tile/entries/x001/002.p/7").unwrap(),
            (
                TileId {
                    level: 0,
                    index: 1002,
                    width: 7
                },
                true
            )
        );
    }

    #[test]
    fn widths_for_70000() {
        assert_eq!((full_tiles(0, 70000), partial_width(0, 70000)), (273, 112));
        assert_eq!((full_tiles(1, 70000), partial_width(1, 70000)), (1, 17));
        assert_eq!((full_tiles(2, 70000), partial_width(2, 70000)), (0, 1));
        assert_eq!(partial_width(9, u64::MAX), 0);
        let paths: Vec<String> = edge_tiles_for_size(70000)
            .iter()
            .map(TileId::path)
            .collect();
        assert_eq!(
            paths,
            [
                "tile/0/272",
                "tile/0/273.p/112",
                "tile/1/000",
                "tile/1/001.p/17",
                "tile/2/000.p/1"
            ]
        );
        let paths: Vec<String> = tiles_for_size(256).iter().map(TileId::path).collect();
        assert_eq!(paths, ["tile/1/000.p/1"]);
        assert!(tiles_for_size(0).is_empty());
        assert_eq!(tiles_for_size(u64::MAX).len(), 8);
    }
}
