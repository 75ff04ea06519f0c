//! Glue for C2SP tiles and entry bundles: buffers in without a copy, the GIL
//! released while hashing, core errors mapped once by `crate::errors`.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rekorkit_core::appender::{root_from_edge, TileAppender as CoreAppender};
use rekorkit_core::tile_proof::{
    consistency_elements, inclusion_elements, is_perfect, node_address, root_element,
    tiles_for_elements, ProofElement, TileSet,
};
use rekorkit_core::{bundle, tiles, Hash};

use crate::errors::{malformed, IntoPyResult};

// ---------------------------------------------------------------------------
// Byte input without a copy: `bytes`, or any C-contiguous byte buffer.

enum ByteView<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyBuffer<u8>),
}

impl<'py> ByteView<'py> {
    fn new(obj: &Bound<'py, PyAny>, what: &'static str) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(ByteView::Bytes(b.clone()));
        }
        let py = obj.py();
        let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
            let tname = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            malformed(
                py,
                what,
                "argument",
                format!("expected bytes or a uint8 buffer, got {tname}"),
            )
        })?;
        if !buf.is_c_contiguous() {
            return Err(malformed(
                py,
                what,
                "argument",
                "buffer is not C-contiguous",
            ));
        }
        Ok(ByteView::Buffer(buf))
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            ByteView::Bytes(b) => b.as_bytes(),
            ByteView::Buffer(buf) => {
                let len = buf.len_bytes();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the buffer is C-contiguous and of u8 items (checked in `new`),
                // `buf_ptr` points at `len_bytes` readable bytes, and holding the
                // PyBuffer keeps the exporter alive and its memory in place for as
                // long as `self` (and so the returned slice) lives.
                unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, len) }
            }
        }
    }
}

fn hash32(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &'static str) -> PyResult<Hash> {
    let v = ByteView::new(obj, what)?;
    v.as_slice().try_into().map_err(|_| {
        malformed(
            py,
            what,
            "length",
            format!("{} bytes; a hash is 32", v.as_slice().len()),
        )
    })
}

fn tile_tuples(ids: Vec<tiles::TileId>) -> Vec<(u64, u64, u64)> {
    ids.into_iter()
        .map(|t| (t.level, t.index, t.width))
        .collect()
}

// ---------------------------------------------------------------------------
// Paths and widths.

/// Path of hash tile `(level, index)` with `width` hashes.
#[pyfunction]
fn tile_path(py: Python<'_>, level: u64, index: u64, width: u64) -> PyResult<String> {
    Ok(tiles::TileId::new(level, index, width).py_err(py)?.path())
}

/// Path of entry bundle `index` with `width` entries.
#[pyfunction]
fn entries_path(py: Python<'_>, index: u64, width: u64) -> PyResult<String> {
    Ok(tiles::TileId::new(0, index, width)
        .py_err(py)?
        .entries_path())
}

/// Strictly parses a tile path: `(level, index, width, is_entries)`.
#[pyfunction]
fn parse_tile_path(py: Python<'_>, path: &str) -> PyResult<(u64, u64, u64, bool)> {
    let (t, entries) = tiles::parse_tile_path(path).py_err(py)?;
    Ok((t.level, t.index, t.width, entries))
}

/// Width of the partial tile at `level` for tree `size` (0: none).
#[pyfunction]
fn partial_width(level: u64, size: u64) -> u64 {
    tiles::partial_width(level, size)
}

/// The partial tiles a tree of `size` has (what its root is computed from).
#[pyfunction]
fn tiles_for_size(size: u64) -> Vec<(u64, u64, u64)> {
    tile_tuples(tiles::tiles_for_size(size))
}

/// The last full and the partial tile of each level for tree `size`.
#[pyfunction]
fn edge_tiles_for_size(size: u64) -> Vec<(u64, u64, u64)> {
    tile_tuples(tiles::edge_tiles_for_size(size))
}

/// MTH of a hash tile's hashes (for a full tile: its hash in the parent tile).
#[pyfunction]
fn tile_root<'py>(py: Python<'py>, tile: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let v = ByteView::new(tile, "hash tile")?;
    let data = v.as_slice();
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
    let v = ByteView::new(data, "entry bundle")?;
    let buf = v.as_slice();
    let spans = bundle::parse_spans(buf).py_err(py)?;
    PyList::new(py, spans.iter().map(|&(s, e)| PyBytes::new(py, &buf[s..e])))
}

/// Length of the prefix of a bundle holding exactly its first `count` entries.
#[pyfunction]
fn bundle_prefix_len(py: Python<'_>, data: &Bound<'_, PyAny>, count: usize) -> PyResult<usize> {
    let v = ByteView::new(data, "entry bundle")?;
    bundle::prefix_len(v.as_slice(), count).py_err(py)
}

type EntryColumns<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<i32>>);

/// Entries of consecutive bundles as one uint8 buffer and int32 offsets
/// (the Arrow binary layout), skipping `skip` entries and taking `take`.
#[pyfunction]
fn entry_columns<'py>(
    py: Python<'py>,
    bundles: Vec<Bound<'py, PyAny>>,
    skip: usize,
    take: usize,
) -> PyResult<EntryColumns<'py>> {
    let views = bundles
        .iter()
        .map(|b| ByteView::new(b, "entry bundle"))
        .collect::<PyResult<Vec<_>>>()?;
    let slices: Vec<&[u8]> = views.iter().map(ByteView::as_slice).collect();
    let (data, offsets) = py
        .detach(|| bundle::entry_columns(&slices, skip, take))
        .py_err(py)?;
    // Arrow's binary type has 32-bit offsets; a group of bundles is far smaller.
    let offsets = offsets
        .into_iter()
        .map(i32::try_from)
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| PyValueError::new_err("entry data over 2 GiB: use fewer bundles per call"))?;
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
    let views = entries
        .iter()
        .map(|e| ByteView::new(e, "bundle entry"))
        .collect::<PyResult<Vec<_>>>()?;
    let slices: Vec<&[u8]> = views.iter().map(ByteView::as_slice).collect();
    let out = bundle::encode(&slices).py_err(py)?;
    Ok(PyBytes::new(py, &out))
}

fn hashes_array(py: Python<'_>, flat: Vec<u8>) -> PyResult<Bound<'_, PyArray2<u8>>> {
    let n = flat.len() / 32;
    PyArray1::from_vec(py, flat).reshape([n, 32])
}

/// Parses and leaf-hashes an entry bundle: a `(n, 32)` uint8 array.
#[pyfunction]
fn hash_entry_bundle<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let v = ByteView::new(data, "entry bundle")?;
    let buf = v.as_slice();
    let flat = py
        .detach(|| {
            let mut out = Vec::with_capacity(bundle::MAX_BUNDLE_ENTRIES * 32);
            bundle::hash_bundle_into(buf, &mut out).map(|_| out)
        })
        .py_err(py)?;
    hashes_array(py, flat)
}

/// Checks level-0 tile `tile_index` against its entry bundle.
#[pyfunction]
fn verify_bundle_against_tile(
    py: Python<'_>,
    bundle_data: &Bound<'_, PyAny>,
    tile: &Bound<'_, PyAny>,
    tile_index: u64,
) -> PyResult<()> {
    let b = ByteView::new(bundle_data, "entry bundle")?;
    let t = ByteView::new(tile, "hash tile")?;
    let (bs, ts) = (b.as_slice(), t.as_slice());
    py.detach(|| bundle::verify_against_tile(bs, ts, tile_index))
        .py_err(py)
}

/// Checks many bundles against their level-0 tiles, in parallel (`threads`: None = all cores).
#[pyfunction]
#[pyo3(signature = (bundles, tiles_data, tile_indices, threads=None))]
fn verify_bundles_against_tiles(
    py: Python<'_>,
    bundles: Vec<Bound<'_, PyAny>>,
    tiles_data: Vec<Bound<'_, PyAny>>,
    tile_indices: Vec<u64>,
    threads: Option<usize>,
) -> PyResult<()> {
    if bundles.len() != tiles_data.len() || bundles.len() != tile_indices.len() {
        return Err(PyValueError::new_err(format!(
            "{} bundles, {} tiles and {} tile indices: the three must match",
            bundles.len(),
            tiles_data.len(),
            tile_indices.len()
        )));
    }
    let bv = bundles
        .iter()
        .map(|b| ByteView::new(b, "entry bundle"))
        .collect::<PyResult<Vec<_>>>()?;
    let tv = tiles_data
        .iter()
        .map(|t| ByteView::new(t, "hash tile"))
        .collect::<PyResult<Vec<_>>>()?;
    let items: Vec<(&[u8], &[u8], u64)> = bv
        .iter()
        .zip(&tv)
        .zip(&tile_indices)
        .map(|((b, t), &i)| (b.as_slice(), t.as_slice(), i))
        .collect();
    py.detach(|| bundle::verify_many_against_tiles(&items, threads))
        .py_err(py)
}

/// Checks a full tile against its hash in the parent tile.
#[pyfunction]
fn verify_tile_against_parent(
    py: Python<'_>,
    tile: &Bound<'_, PyAny>,
    parent_hash: &Bound<'_, PyAny>,
    level: u64,
    index: u64,
) -> PyResult<()> {
    let parent = hash32(py, parent_hash, "parent hash")?;
    let t = ByteView::new(tile, "hash tile")?;
    let ts = t.as_slice();
    py.detach(|| bundle::verify_tile_against_parent(ts, &parent, level, index))
        .py_err(py)
}

/// Checks consecutive full tiles `(level, first_index + k)` against `parent_hashes[k]`.
#[pyfunction]
#[pyo3(signature = (tiles_data, parent_hashes, level, first_index, threads=None))]
fn verify_tiles_against_parents(
    py: Python<'_>,
    tiles_data: Vec<Bound<'_, PyAny>>,
    parent_hashes: &Bound<'_, PyAny>,
    level: u64,
    first_index: u64,
    threads: Option<usize>,
) -> PyResult<()> {
    let pv = ByteView::new(parent_hashes, "parent hashes")?;
    let ps = pv.as_slice();
    if ps.len() % 32 != 0 {
        return Err(malformed(
            py,
            "parent hashes",
            "length",
            format!("{} bytes is not a multiple of 32", ps.len()),
        ));
    }
    let parents: Vec<Hash> = ps
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    let tv = tiles_data
        .iter()
        .map(|t| ByteView::new(t, "hash tile"))
        .collect::<PyResult<Vec<_>>>()?;
    let ts: Vec<&[u8]> = tv.iter().map(ByteView::as_slice).collect();
    py.detach(|| bundle::verify_many_against_parents(&ts, &parents, level, first_index, threads))
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
fn inclusion_nodes(py: Python<'_>, index: u64, size: u64) -> PyResult<NodeList> {
    Ok(node_lists(inclusion_elements(index, size).py_err(py)?))
}

/// Perfect nodes `(level, index)` per hash of the consistency proof `old -> size`.
#[pyfunction]
fn consistency_nodes(py: Python<'_>, old: u64, size: u64) -> PyResult<NodeList> {
    Ok(node_lists(consistency_elements(old, size).py_err(py)?))
}

/// Where perfect node `(level, index)` of tree `size` lives:
/// `(tile_level, tile_index, tile_width, offset, count)`.
#[pyfunction]
fn node_tile(
    py: Python<'_>,
    level: u64,
    index: u64,
    size: u64,
) -> PyResult<(u64, u64, u64, u64, u64)> {
    let a = node_address(level, index).py_err(py)?;
    if !is_perfect(level, index, size) {
        return Err(PyValueError::new_err(format!(
            "node ({level}, {index}) is not a perfect node of a tree of size {size}"
        )));
    }
    let width = tiles::tile_width(a.tile_level, a.tile_index, size);
    Ok((a.tile_level, a.tile_index, width, a.offset, a.count))
}

/// Tiles (level, index, width) the inclusion proof of `index` in `size` reads.
#[pyfunction]
fn inclusion_tiles(py: Python<'_>, index: u64, size: u64) -> PyResult<Vec<(u64, u64, u64)>> {
    let els = inclusion_elements(index, size).py_err(py)?;
    Ok(tile_tuples(tiles_for_elements(&els, size).py_err(py)?))
}

/// Tiles (level, index, width) the consistency proof `old -> size` reads.
#[pyfunction]
fn consistency_tiles(py: Python<'_>, old: u64, size: u64) -> PyResult<Vec<(u64, u64, u64)>> {
    let els = consistency_elements(old, size).py_err(py)?;
    Ok(tile_tuples(tiles_for_elements(&els, size).py_err(py)?))
}

fn eval_elements<'py>(
    py: Python<'py>,
    size: u64,
    els: &[ProofElement],
    tiles_in: &[(u64, u64, Bound<'py, PyAny>)],
) -> PyResult<Vec<Hash>> {
    let views = tiles_in
        .iter()
        .map(|(_, _, d)| ByteView::new(d, "hash tile"))
        .collect::<PyResult<Vec<_>>>()?;
    let mut set = TileSet::new(size);
    for ((l, i, _), v) in tiles_in.iter().zip(&views) {
        set.insert(*l, *i, v.as_slice()).py_err(py)?;
    }
    els.iter()
        .map(|e| set.element(e))
        .collect::<rekorkit_core::Result<Vec<_>>>()
        .py_err(py)
}

fn hash_list<'py>(py: Python<'py>, hs: Vec<Hash>) -> Vec<Bound<'py, PyBytes>> {
    hs.iter().map(|h| PyBytes::new(py, h)).collect()
}

/// Inclusion proof of leaf `index` in tree `size`, from tiles `(level, index, bytes)`.
#[pyfunction]
fn inclusion_proof_from_tiles<'py>(
    py: Python<'py>,
    index: u64,
    size: u64,
    tiles: Vec<(u64, u64, Bound<'py, PyAny>)>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let els = inclusion_elements(index, size).py_err(py)?;
    Ok(hash_list(py, eval_elements(py, size, &els, &tiles)?))
}

/// Consistency proof from `old` to `size`, from tiles `(level, index, bytes)`.
#[pyfunction]
fn consistency_proof_from_tiles<'py>(
    py: Python<'py>,
    old: u64,
    size: u64,
    tiles: Vec<(u64, u64, Bound<'py, PyAny>)>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let els = consistency_elements(old, size).py_err(py)?;
    Ok(hash_list(py, eval_elements(py, size, &els, &tiles)?))
}

/// Tiles (level, index, width) the inclusion proofs of all `indices` in `size` read.
#[pyfunction]
fn inclusion_tiles_many(
    py: Python<'_>,
    indices: Vec<u64>,
    size: u64,
) -> PyResult<Vec<(u64, u64, u64)>> {
    let mut els = Vec::new();
    for &i in &indices {
        els.extend(inclusion_elements(i, size).py_err(py)?);
    }
    Ok(tile_tuples(tiles_for_elements(&els, size).py_err(py)?))
}

/// Proofs flattened: all hashes `(m, 32)` and offsets `(n + 1,)` into them.
type FlatProofs<'py> = (Bound<'py, PyArray2<u8>>, Bound<'py, PyArray1<u64>>);

/// Inclusion proofs of many leaves, flattened: `(hashes (m, 32), offsets (n + 1,))`.
#[pyfunction]
fn inclusion_proofs_from_tiles<'py>(
    py: Python<'py>,
    indices: Vec<u64>,
    size: u64,
    tiles: Vec<(u64, u64, Bound<'py, PyAny>)>,
) -> PyResult<FlatProofs<'py>> {
    let views = tiles
        .iter()
        .map(|(_, _, d)| ByteView::new(d, "hash tile"))
        .collect::<PyResult<Vec<_>>>()?;
    let mut set = TileSet::new(size);
    for ((l, i, _), v) in tiles.iter().zip(&views) {
        set.insert(*l, *i, v.as_slice()).py_err(py)?;
    }
    let mut flat: Vec<u8> = Vec::new();
    let mut offsets: Vec<u64> = Vec::with_capacity(indices.len() + 1);
    offsets.push(0);
    for &index in &indices {
        for e in inclusion_elements(index, size).py_err(py)? {
            flat.extend_from_slice(&set.element(&e).py_err(py)?);
        }
        offsets.push((flat.len() / 32) as u64);
    }
    Ok((hashes_array(py, flat)?, PyArray1::from_vec(py, offsets)))
}

/// Root of tree `size` from tiles `(level, index, bytes)` (its partial tiles suffice).
#[pyfunction]
fn root_from_tiles<'py>(
    py: Python<'py>,
    size: u64,
    tiles: Vec<(u64, u64, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let h = eval_elements(py, size, &[root_element(size)], &tiles)?;
    let root = h.first().copied().unwrap_or(rekorkit_core::EMPTY_ROOT);
    Ok(PyBytes::new(py, &root))
}

// ---------------------------------------------------------------------------
// TileAppender.

/// A touched tile as Python sees it: `(level, index, width, content)`.
type TouchedTuple<'py> = (u64, u64, u64, Bound<'py, PyBytes>);

/// The right edge of a tiled log: append leaf hashes, get the tiles to write.
#[pyclass(module = "rekorkit._native")]
struct TileAppender {
    inner: CoreAppender,
}

#[pymethods]
impl TileAppender {
    #[new]
    #[pyo3(signature = (size=0, edge_tiles=None))]
    fn new(
        py: Python<'_>,
        size: u64,
        edge_tiles: Option<Vec<(u64, Bound<'_, PyAny>)>>,
    ) -> PyResult<Self> {
        let given = edge_tiles.unwrap_or_default();
        let views = given
            .iter()
            .map(|(_, d)| ByteView::new(d, "edge tile"))
            .collect::<PyResult<Vec<_>>>()?;
        let edge: Vec<(u64, &[u8])> = given
            .iter()
            .zip(&views)
            .map(|((l, _), v)| (*l, v.as_slice()))
            .collect();
        Ok(TileAppender {
            inner: CoreAppender::from_edge(size, &edge).py_err(py)?,
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

    /// Appends a `(n, 32)` uint8 array of leaf hashes; returns the touched tiles
    /// as `(level, index, width, bytes)`.
    fn append<'py>(
        &mut self,
        py: Python<'py>,
        leaf_hashes: PyReadonlyArray2<'py, u8>,
    ) -> PyResult<Vec<TouchedTuple<'py>>> {
        let shape = leaf_hashes.shape();
        if shape.len() != 2 || shape[1] != 32 {
            return Err(malformed(
                py,
                "leaf hashes",
                "shape",
                format!("shape {shape:?}; expected (n, 32)"),
            ));
        }
        let flat = leaf_hashes
            .as_slice()
            .map_err(|_| malformed(py, "leaf hashes", "layout", "array is not C-contiguous"))?;
        // SAFETY: `flat` holds n*32 bytes (shape checked above) and `[u8; 32]`
        // has alignment 1, so it is exactly n valid `[u8; 32]` values.
        let hashes: &[Hash] =
            unsafe { std::slice::from_raw_parts(flat.as_ptr().cast::<Hash>(), flat.len() / 32) };
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
fn root_from_edge_tiles<'py>(
    py: Python<'py>,
    edge: Vec<(u64, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let views = edge
        .iter()
        .map(|(_, d)| ByteView::new(d, "edge tile"))
        .collect::<PyResult<Vec<_>>>()?;
    for ((l, _), v) in edge.iter().zip(&views) {
        if tiles::check_hash_tile(v.as_slice()).is_err()
            || v.as_slice().len() == tiles::FULL_TILE_BYTES
        {
            return Err(malformed(
                py,
                "edge tile",
                format!("level {l}"),
                "not a partial tile",
            ));
        }
    }
    let root = root_from_edge(
        edge.iter()
            .zip(&views)
            .map(|((l, _), v)| (*l, v.as_slice())),
    );
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
