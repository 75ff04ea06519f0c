//! Glue for C2SP tiles and entry bundles: buffers in without a copy, the GIL
//! released while hashing, core errors mapped once by `crate::errors`.

use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rekorkit_core::appender::{root_from_edge, TileAppender as CoreAppender};
use rekorkit_core::tile_proof::{
    self, consistency_elements, inclusion_elements, is_perfect, node_address, tiles_for_elements,
    ProofElement, TileSet,
};
use rekorkit_core::{bundle, tiles, Hash};

use crate::buffers::{
    byte_view, flat_hashes_to_array, hash32, hash_list as hash_view, hashes_to_array, text,
    thread_count, ByteView, Threads, Uint, U64,
};
use crate::errors::{malformed, IntoPyResult};

fn tile_tuples(ids: Vec<tiles::TileId>) -> Vec<(u64, u64, u64)> {
    ids.into_iter()
        .map(|t| (t.level, t.index, t.width))
        .collect()
}

// ---------------------------------------------------------------------------
// Paths and widths.

/// Path of hash tile `(level, index)` with `width` hashes.
#[pyfunction]
fn tile_path(py: Python<'_>, level: U64, index: U64, width: U64) -> PyResult<String> {
    Ok(tiles::TileId::new(level.0, index.0, width.0)
        .py_err(py)?
        .path())
}

/// Path of entry bundle `index` with `width` entries.
#[pyfunction]
fn entries_path(py: Python<'_>, index: U64, width: U64) -> PyResult<String> {
    Ok(tiles::TileId::new(0, index.0, width.0)
        .py_err(py)?
        .entries_path())
}

/// Strictly parses a tile path: `(level, index, width, is_entries)`.
#[pyfunction]
fn parse_tile_path(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<(u64, u64, u64, bool)> {
    let path = text(path, "tile path")?;
    let (t, entries) = tiles::parse_tile_path(&path).py_err(py)?;
    Ok((t.level, t.index, t.width, entries))
}

/// Width of the partial tile at `level` for tree `size` (0: none).
#[pyfunction]
fn partial_width(level: U64, size: U64) -> u64 {
    tiles::partial_width(level.0, size.0)
}

/// The partial tiles a tree of `size` has (what its root is computed from).
#[pyfunction]
fn tiles_for_size(size: U64) -> Vec<(u64, u64, u64)> {
    tile_tuples(tiles::tiles_for_size(size.0))
}

/// The last full and the partial tile of each level for tree `size`.
#[pyfunction]
fn edge_tiles_for_size(size: U64) -> Vec<(u64, u64, u64)> {
    tile_tuples(tiles::edge_tiles_for_size(size.0))
}

/// MTH of a hash tile's hashes (for a full tile: its hash in the parent tile).
#[pyfunction]
fn tile_root<'py>(py: Python<'py>, tile: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let v = byte_view(tile, "hash tile")?;
    let data = v.bytes();
    let h = py.detach(|| tiles::tile_root(data)).py_err(py)?;
    Ok(PyBytes::new(py, &h))
}

// ---------------------------------------------------------------------------
// Entry bundles.

/// Parses an entry bundle into its entries.
#[pyfunction]
fn parse_entry_bundle<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let v = byte_view(data, "entry bundle")?;
    let buf = v.bytes();
    let spans = bundle::parse_spans(buf).py_err(py)?;
    PyList::new(py, spans.iter().map(|&(s, e)| PyBytes::new(py, &buf[s..e])))
}

/// Length of the prefix of a bundle holding exactly its first `count` entries.
#[pyfunction]
fn bundle_prefix_len(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    count: Uint<usize>,
) -> PyResult<usize> {
    let v = byte_view(data, "entry bundle")?;
    bundle::prefix_len(v.bytes(), count.0).py_err(py)
}

type EntryColumns<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<i32>>);

/// Entries of consecutive bundles as one uint8 buffer and int32 offsets
/// (the Arrow binary layout), skipping `skip` entries and taking `take`.
#[pyfunction]
fn entry_columns<'py>(
    py: Python<'py>,
    bundles: Vec<Bound<'py, PyAny>>,
    skip: Uint<usize>,
    take: Uint<usize>,
) -> PyResult<EntryColumns<'py>> {
    let views = byte_views(&bundles, "entry bundle")?;
    let slices: Vec<&[u8]> = views.iter().map(ByteView::bytes).collect();
    let (data, offsets) = py
        .detach(|| bundle::entry_columns(&slices, skip.0, take.0))
        .py_err(py)?;
    // Arrow's binary type has 32-bit offsets; a group of bundles is far smaller.
    let offsets = offsets
        .into_iter()
        .map(i32::try_from)
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| {
            malformed(
                py,
                "entry bundle",
                "offsets",
                "entry data over 2 GiB: use fewer bundles per call",
            )
        })?;
    Ok((
        PyArray1::from_vec(py, data),
        PyArray1::from_vec(py, offsets),
    ))
}

/// Encodes entries as an entry bundle.
#[pyfunction]
fn encode_entry_bundle<'py>(
    py: Python<'py>,
    entries: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let views = byte_views(&entries, "bundle entry")?;
    let slices: Vec<&[u8]> = views.iter().map(ByteView::bytes).collect();
    let out = bundle::encode(&slices).py_err(py)?;
    Ok(PyBytes::new(py, &out))
}

/// Parses and leaf-hashes an entry bundle: a `(n, 32)` uint8 array.
#[pyfunction]
fn hash_entry_bundle<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let v = byte_view(data, "entry bundle")?;
    let buf = v.bytes();
    let flat = py
        .detach(|| {
            let mut out = Vec::with_capacity(bundle::MAX_BUNDLE_ENTRIES * 32);
            bundle::hash_bundle_into(buf, &mut out).map(|_| out)
        })
        .py_err(py)?;
    flat_hashes_to_array(py, flat)
}

/// Checks level-0 tile `tile_index` against its entry bundle.
#[pyfunction]
fn verify_bundle_against_tile(
    py: Python<'_>,
    bundle_data: &Bound<'_, PyAny>,
    tile: &Bound<'_, PyAny>,
    tile_index: U64,
) -> PyResult<()> {
    let b = byte_view(bundle_data, "entry bundle")?;
    let t = byte_view(tile, "hash tile")?;
    let (bs, ts) = (b.bytes(), t.bytes());
    py.detach(|| bundle::verify_against_tile(bs, ts, tile_index.0))
        .py_err(py)
}

/// Checks many bundles against their level-0 tiles, in parallel (`threads`: None = all cores).
#[pyfunction]
#[pyo3(signature = (bundles, tiles_data, tile_indices, threads=None))]
fn verify_bundles_against_tiles(
    py: Python<'_>,
    bundles: Vec<Bound<'_, PyAny>>,
    tiles_data: Vec<Bound<'_, PyAny>>,
    tile_indices: Vec<U64>,
    threads: Threads,
) -> PyResult<()> {
    if bundles.len() != tiles_data.len() || bundles.len() != tile_indices.len() {
        return Err(malformed(
            py,
            "entry bundles",
            "length",
            format!(
                "{} bundles, {} tiles and {} tile indices: the three must match",
                bundles.len(),
                tiles_data.len(),
                tile_indices.len()
            ),
        ));
    }
    let bv = byte_views(&bundles, "entry bundle")?;
    let tv = byte_views(&tiles_data, "hash tile")?;
    let items: Vec<(&[u8], &[u8], u64)> = bv
        .iter()
        .zip(&tv)
        .zip(&tile_indices)
        .map(|((b, t), i)| (b.bytes(), t.bytes(), i.0))
        .collect();
    py.detach(|| bundle::verify_many_against_tiles(&items, thread_count(threads)))
        .py_err(py)
}

/// Checks a full tile against its hash in the parent tile.
#[pyfunction]
fn verify_tile_against_parent(
    py: Python<'_>,
    tile: &Bound<'_, PyAny>,
    parent_hash: &Bound<'_, PyAny>,
    level: U64,
    index: U64,
) -> PyResult<()> {
    let parent = hash32(parent_hash, "parent hash", None)?;
    let t = byte_view(tile, "hash tile")?;
    let ts = t.bytes();
    py.detach(|| bundle::verify_tile_against_parent(ts, &parent, level.0, index.0))
        .py_err(py)
}

/// Checks consecutive full tiles `(level, first_index + k)` against `parent_hashes[k]`.
#[pyfunction]
#[pyo3(signature = (tiles_data, parent_hashes, level, first_index, threads=None))]
fn verify_tiles_against_parents(
    py: Python<'_>,
    tiles_data: Vec<Bound<'_, PyAny>>,
    parent_hashes: &Bound<'_, PyAny>,
    level: U64,
    first_index: U64,
    threads: Threads,
) -> PyResult<()> {
    let pv = hash_view(parent_hashes, "parent hashes")?;
    let parents = pv.hashes();
    let tv = byte_views(&tiles_data, "hash tile")?;
    let ts: Vec<&[u8]> = tv.iter().map(ByteView::bytes).collect();
    let (level, first) = (level.0, first_index.0);
    py.detach(|| {
        bundle::verify_many_against_parents(&ts, parents, level, first, thread_count(threads))
    })
    .py_err(py)
}

// ---------------------------------------------------------------------------
// Proofs and roots from tiles.

type NodeList = Vec<Vec<(u64, u64)>>;

fn node_lists(els: Vec<ProofElement>) -> NodeList {
    els.into_iter().map(|e| e.nodes).collect()
}

/// Perfect nodes `(level, index)` per hash of the inclusion proof of `index` in `size`.
#[pyfunction]
fn inclusion_nodes(py: Python<'_>, index: U64, size: U64) -> PyResult<NodeList> {
    Ok(node_lists(inclusion_elements(index.0, size.0).py_err(py)?))
}

/// Perfect nodes `(level, index)` per hash of the consistency proof `old -> size`.
#[pyfunction]
fn consistency_nodes(py: Python<'_>, old: U64, size: U64) -> PyResult<NodeList> {
    Ok(node_lists(consistency_elements(old.0, size.0).py_err(py)?))
}

/// Where perfect node `(level, index)` of tree `size` lives:
/// `(tile_level, tile_index, tile_width, offset, count)`.
#[pyfunction]
fn node_tile(
    py: Python<'_>,
    level: U64,
    index: U64,
    size: U64,
) -> PyResult<(u64, u64, u64, u64, u64)> {
    let (level, index, size) = (level.0, index.0, size.0);
    let a = node_address(level, index).py_err(py)?;
    if !is_perfect(level, index, size) {
        return Err(malformed(
            py,
            "argument",
            "node",
            format!("node ({level}, {index}) is not a perfect node of a tree of size {size}"),
        ));
    }
    let width = tiles::tile_width(a.tile_level, a.tile_index, size);
    Ok((a.tile_level, a.tile_index, width, a.offset, a.count))
}

/// Tiles (level, index, width) the inclusion proof of `index` in `size` reads.
#[pyfunction]
fn inclusion_tiles(py: Python<'_>, index: U64, size: U64) -> PyResult<Vec<(u64, u64, u64)>> {
    let els = inclusion_elements(index.0, size.0).py_err(py)?;
    Ok(tile_tuples(tiles_for_elements(&els, size.0).py_err(py)?))
}

/// Tiles (level, index, width) the consistency proof `old -> size` reads.
#[pyfunction]
fn consistency_tiles(py: Python<'_>, old: U64, size: U64) -> PyResult<Vec<(u64, u64, u64)>> {
    let els = consistency_elements(old.0, size.0).py_err(py)?;
    Ok(tile_tuples(tiles_for_elements(&els, size.0).py_err(py)?))
}

/// Tiles (level, index, width) the inclusion proofs of all `indices` in `size` read.
#[pyfunction]
fn inclusion_tiles_many(
    py: Python<'_>,
    indices: Vec<U64>,
    size: U64,
) -> PyResult<Vec<(u64, u64, u64)>> {
    let indices: Vec<u64> = indices.into_iter().map(|i| i.0).collect();
    Ok(tile_tuples(
        tile_proof::inclusion_tiles_many(&indices, size.0).py_err(py)?,
    ))
}

fn byte_views<'py>(objs: &[Bound<'py, PyAny>], what: &'static str) -> PyResult<Vec<ByteView<'py>>> {
    objs.iter().map(|o| byte_view(o, what)).collect()
}

/// Fetched tiles `(level, index, bytes)` as the binding receives them.
type TilesIn<'py> = Vec<(U64, U64, Bound<'py, PyAny>)>;

/// Views the tiles' bytes; `tile_set` then borrows them for one tree size.
fn tile_views<'py>(tiles: &TilesIn<'py>) -> PyResult<Vec<(u64, u64, ByteView<'py>)>> {
    tiles
        .iter()
        .map(|(l, i, d)| Ok((l.0, i.0, byte_view(d, "hash tile")?)))
        .collect()
}

fn tile_set<'a>(
    py: Python<'_>,
    size: u64,
    views: &'a [(u64, u64, ByteView<'_>)],
) -> PyResult<TileSet<'a>> {
    TileSet::with_tiles(size, views.iter().map(|(l, i, v)| (*l, *i, v.bytes()))).py_err(py)
}

fn hash_pylist(py: Python<'_>, hs: Vec<Hash>) -> Vec<Bound<'_, PyBytes>> {
    hs.iter().map(|h| PyBytes::new(py, h)).collect()
}

/// Inclusion proof of leaf `index` in tree `size`, from tiles `(level, index, bytes)`.
#[pyfunction]
fn inclusion_proof_from_tiles<'py>(
    py: Python<'py>,
    index: U64,
    size: U64,
    tiles: TilesIn<'py>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let views = tile_views(&tiles)?;
    let proof = tile_set(py, size.0, &views)?
        .inclusion_proof(index.0)
        .py_err(py)?;
    Ok(hash_pylist(py, proof))
}

/// Consistency proof from `old` to `size`, from tiles `(level, index, bytes)`.
#[pyfunction]
fn consistency_proof_from_tiles<'py>(
    py: Python<'py>,
    old: U64,
    size: U64,
    tiles: TilesIn<'py>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let views = tile_views(&tiles)?;
    let proof = tile_set(py, size.0, &views)?
        .consistency_proof(old.0)
        .py_err(py)?;
    Ok(hash_pylist(py, proof))
}

/// Proofs flattened: all hashes `(m, 32)` and offsets `(n + 1,)` into them.
type FlatProofs<'py> = (Bound<'py, PyArray2<u8>>, Bound<'py, PyArray1<u64>>);

/// Inclusion proofs of many leaves, flattened: `(hashes (m, 32), offsets (n + 1,))`.
#[pyfunction]
fn inclusion_proofs_from_tiles<'py>(
    py: Python<'py>,
    indices: Vec<U64>,
    size: U64,
    tiles: TilesIn<'py>,
) -> PyResult<FlatProofs<'py>> {
    let views = tile_views(&tiles)?;
    let indices: Vec<u64> = indices.into_iter().map(|i| i.0).collect();
    let (hashes, offsets) = tile_set(py, size.0, &views)?
        .inclusion_proofs(&indices)
        .py_err(py)?;
    Ok((
        hashes_to_array(py, hashes)?,
        PyArray1::from_vec(py, offsets),
    ))
}

/// Root of tree `size` from tiles `(level, index, bytes)` (its partial tiles suffice).
#[pyfunction]
fn root_from_tiles<'py>(
    py: Python<'py>,
    size: U64,
    tiles: TilesIn<'py>,
) -> PyResult<Bound<'py, PyBytes>> {
    let views = tile_views(&tiles)?;
    let root = tile_set(py, size.0, &views)?.root().py_err(py)?;
    Ok(PyBytes::new(py, &root))
}

// ---------------------------------------------------------------------------
// TileAppender.

/// A touched tile as Python sees it: `(level, index, width, content)`.
type TouchedTuple<'py> = (u64, u64, u64, Bound<'py, PyBytes>);

/// Edge tiles `(level, bytes)` as the binding receives them.
type EdgeIn<'py> = Vec<(U64, Bound<'py, PyAny>)>;

fn edge_views<'py>(edge: &EdgeIn<'py>) -> PyResult<Vec<(u64, ByteView<'py>)>> {
    edge.iter()
        .map(|(l, d)| Ok((l.0, byte_view(d, "edge tile")?)))
        .collect()
}

/// The right edge of a tiled log: append leaf hashes, get the tiles to write.
#[pyclass(module = "rekorkit._native")]
struct TileAppender {
    inner: CoreAppender,
}

#[pymethods]
impl TileAppender {
    #[new]
    #[pyo3(signature = (size=Uint(0), edge_tiles=None), text_signature = "(size=0, edge_tiles=None)")]
    fn new(py: Python<'_>, size: U64, edge_tiles: Option<EdgeIn<'_>>) -> PyResult<Self> {
        let views = edge_views(&edge_tiles.unwrap_or_default())?;
        let edge: Vec<(u64, &[u8])> = views.iter().map(|(l, v)| (*l, v.bytes())).collect();
        Ok(TileAppender {
            inner: CoreAppender::from_edge(size.0, &edge).py_err(py)?,
        })
    }

    /// Leaves appended so far.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size()
    }

    /// The tree root.
    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.root())
    }

    /// The partial tiles `(level, bytes)`.
    fn edge_tiles<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyBytes>)> {
        self.inner
            .edge()
            .into_iter()
            .map(|(l, d)| (l, PyBytes::new(py, d)))
            .collect()
    }

    /// Appends leaf hashes (a `(n, 32)` uint8 array, or `32 * n` bytes);
    /// returns the touched tiles as `(level, index, width, bytes)`.
    fn append<'py>(
        &mut self,
        py: Python<'py>,
        leaf_hashes: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<TouchedTuple<'py>>> {
        let view = hash_view(leaf_hashes, "leaf hashes")?;
        let hashes = view.hashes();
        let inner = &mut self.inner;
        let touched = py.detach(|| inner.append(hashes)).py_err(py)?;
        Ok(touched
            .into_iter()
            .map(|t| {
                (
                    t.id.level,
                    t.id.index,
                    t.id.width,
                    PyBytes::new(py, &t.data),
                )
            })
            .collect())
    }
}

/// Root of a tree from its partial tiles `(level, bytes)`, without a size check.
#[pyfunction]
fn root_from_edge_tiles<'py>(py: Python<'py>, edge: EdgeIn<'py>) -> PyResult<Bound<'py, PyBytes>> {
    let views = edge_views(&edge)?;
    for (l, v) in &views {
        let data = v.bytes();
        if tiles::check_hash_tile(data).is_err() || data.len() == tiles::FULL_TILE_BYTES {
            return Err(malformed(
                py,
                "edge tile",
                format!("level {l}"),
                "not a partial tile",
            ));
        }
    }
    let root = root_from_edge(views.iter().map(|(l, v)| (*l, v.bytes())));
    Ok(PyBytes::new(py, &root))
}

/// Registers this module's functions and classes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tile_path, m)?)?;
    m.add_function(wrap_pyfunction!(entries_path, m)?)?;
    m.add_function(wrap_pyfunction!(parse_tile_path, m)?)?;
    m.add_function(wrap_pyfunction!(partial_width, m)?)?;
    m.add_function(wrap_pyfunction!(tiles_for_size, m)?)?;
    m.add_function(wrap_pyfunction!(edge_tiles_for_size, m)?)?;
    m.add_function(wrap_pyfunction!(tile_root, m)?)?;
    m.add_function(wrap_pyfunction!(parse_entry_bundle, m)?)?;
    m.add_function(wrap_pyfunction!(bundle_prefix_len, m)?)?;
    m.add_function(wrap_pyfunction!(entry_columns, m)?)?;
    m.add_function(wrap_pyfunction!(encode_entry_bundle, m)?)?;
    m.add_function(wrap_pyfunction!(hash_entry_bundle, m)?)?;
    m.add_function(wrap_pyfunction!(verify_bundle_against_tile, m)?)?;
    m.add_function(wrap_pyfunction!(verify_bundles_against_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(verify_tile_against_parent, m)?)?;
    m.add_function(wrap_pyfunction!(verify_tiles_against_parents, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_tiles_many, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_proofs_from_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(consistency_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(node_tile, m)?)?;
    m.add_function(wrap_pyfunction!(consistency_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_proof_from_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(consistency_proof_from_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(root_from_tiles, m)?)?;
    m.add_function(wrap_pyfunction!(root_from_edge_tiles, m)?)?;
    m.add_class::<TileAppender>()?;
    Ok(())
}
