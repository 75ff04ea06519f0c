//! `rekorkit._native` Merkle functions: hashing, roots, compact ranges, proofs.
//!
//! Inputs are borrowed (see `buffers`); batch work runs with the GIL released.

use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rekorkit_core::{batch, proof, proof_tree, tree, Hash};

use crate::buffers::{
    byte_view, hash32, hash_list, hashes_to_array, thread_count, u64_array, Threads, Uint, U64,
};
use crate::errors::{malformed, IntoPyResult};

fn hash_bytes<'py>(py: Python<'py>, h: &Hash) -> Bound<'py, PyBytes> {
    PyBytes::new(py, h)
}

fn hash_pylist<'py>(py: Python<'py>, hashes: &[Hash]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, hashes.iter().map(|h| PyBytes::new(py, h)))
}

#[pyfunction]
pub fn leaf_hash<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    hash_bytes(py, &rekorkit_core::leaf_hash(data))
}

/// RFC 6962 §2.1 `HASH(0x01 || left || right)`: any byte strings, the fast
/// fixed-padding path when both are 32 bytes (the RFC hasher vectors use others).
#[pyfunction]
pub fn node_hash<'py>(py: Python<'py>, left: &[u8], right: &[u8]) -> Bound<'py, PyBytes> {
    match (<&Hash>::try_from(left), <&Hash>::try_from(right)) {
        (Ok(l), Ok(r)) => hash_bytes(py, &rekorkit_core::node_hash(l, r)),
        _ => hash_bytes(py, &rekorkit_core::hash::node_hash_bytes(left, right)),
    }
}

#[pyfunction]
#[pyo3(signature = (entries, threads=None))]
pub fn hash_leaves<'py>(
    py: Python<'py>,
    entries: &Bound<'py, PyAny>,
    threads: Threads,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    // Hold strong references so the borrowed slices outlive the GIL release.
    let mut owned: Vec<Bound<'py, PyBytes>> = Vec::new();
    for (i, item) in entries.try_iter()?.enumerate() {
        let item = item?;
        let b = item.cast_into::<PyBytes>().map_err(|e| {
            malformed(
                py,
                "entries",
                format!("index {i}"),
                format!(
                    "expected bytes, got {}",
                    e.into_inner()
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ),
            )
        })?;
        owned.push(b);
    }
    let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
    let hashes = py
        .detach(|| batch::hash_leaves(&slices, thread_count(threads)))
        .py_err(py)?;
    hashes_to_array(py, hashes)
}

#[pyfunction]
#[pyo3(signature = (buf, offsets, threads=None))]
pub fn hash_leaves_buffer<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    offsets: &Bound<'py, PyAny>,
    threads: Threads,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let buf = byte_view(buf, "entry buffer")?;
    let offsets = u64_array(offsets, "entry offsets")?;
    let data = buf.bytes();
    let offs = offsets.as_slice().unwrap_or(&[]);
    let hashes = py
        .detach(|| batch::hash_leaves_buffer(data, offs, thread_count(threads)))
        .py_err(py)?;
    hashes_to_array(py, hashes)
}

#[pyfunction]
#[pyo3(signature = (leaf_hashes, threads=None))]
pub fn root<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    threads: Threads,
) -> PyResult<Bound<'py, PyBytes>> {
    let list = hash_list(leaf_hashes, "leaf hashes")?;
    let leaves = list.hashes();
    let h = py
        .detach(|| tree::root_with_threads(leaves, thread_count(threads)))
        .py_err(py)?;
    Ok(hash_bytes(py, &h))
}

#[pyfunction]
pub fn verify_inclusion(
    py: Python<'_>,
    leaf_hash: &Bound<'_, PyAny>,
    index: U64,
    size: U64,
    proof: &Bound<'_, PyAny>,
    root: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let leaf = hash32(leaf_hash, "leaf hash", None)?;
    let root = hash32(root, "root", None)?;
    let proof = hash_list(proof, "proof")?;
    proof::verify_inclusion(&leaf, index.0, size.0, proof.hashes(), &root).py_err(py)
}

type BatchReturn<'py> = (Bound<'py, PyArray1<bool>>, Option<usize>, Option<String>);

fn batch_return(py: Python<'_>, out: proof::BatchOutcome) -> BatchReturn<'_> {
    let (first, reason) = match out.first_failure {
        Some((i, r)) => (Some(i), Some(r)),
        None => (None, None),
    };
    (PyArray1::from_vec(py, out.ok), first, reason)
}

#[pyfunction]
#[pyo3(signature = (leaf_hashes, indices, sizes, proofs, proof_offsets, roots, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn verify_inclusion_batch<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    sizes: &Bound<'py, PyAny>,
    proofs: &Bound<'py, PyAny>,
    proof_offsets: &Bound<'py, PyAny>,
    roots: &Bound<'py, PyAny>,
    threads: Threads,
) -> PyResult<BatchReturn<'py>> {
    let leaves = hash_list(leaf_hashes, "leaf hashes")?;
    let indices = u64_array(indices, "indices")?;
    let sizes = u64_array(sizes, "sizes")?;
    let proofs = hash_list(proofs, "proofs")?;
    let offsets = u64_array(proof_offsets, "proof offsets")?;
    let roots = hash_list(roots, "roots")?;
    let (l, i, s, p, o, r) = (
        leaves.hashes(),
        indices.as_slice().unwrap_or(&[]),
        sizes.as_slice().unwrap_or(&[]),
        proofs.hashes(),
        offsets.as_slice().unwrap_or(&[]),
        roots.hashes(),
    );
    let out = py
        .detach(|| proof::verify_inclusion_batch(l, i, s, p, o, r, thread_count(threads)))
        .py_err(py)?;
    Ok(batch_return(py, out))
}

#[pyfunction]
pub fn inclusion_proof<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    index: U64,
    size: U64,
) -> PyResult<Bound<'py, PyList>> {
    let list = hash_list(leaf_hashes, "leaf hashes")?;
    let leaves = list.hashes();
    let p = py
        .detach(|| proof::inclusion_proof(leaves, index.0, size.0))
        .py_err(py)?;
    hash_pylist(py, &p)
}

#[pyfunction]
pub fn verify_consistency(
    py: Python<'_>,
    size1: U64,
    size2: U64,
    root1: &Bound<'_, PyAny>,
    root2: &Bound<'_, PyAny>,
    proof: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let r1 = hash32(root1, "root1", None)?;
    let r2 = hash32(root2, "root2", None)?;
    let proof = hash_list(proof, "proof")?;
    proof::verify_consistency(size1.0, size2.0, &r1, &r2, proof.hashes()).py_err(py)
}

#[pyfunction]
#[pyo3(signature = (sizes1, sizes2, roots1, roots2, proofs, proof_offsets, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn verify_consistency_batch<'py>(
    py: Python<'py>,
    sizes1: &Bound<'py, PyAny>,
    sizes2: &Bound<'py, PyAny>,
    roots1: &Bound<'py, PyAny>,
    roots2: &Bound<'py, PyAny>,
    proofs: &Bound<'py, PyAny>,
    proof_offsets: &Bound<'py, PyAny>,
    threads: Threads,
) -> PyResult<BatchReturn<'py>> {
    let sizes1 = u64_array(sizes1, "sizes1")?;
    let sizes2 = u64_array(sizes2, "sizes2")?;
    let roots1 = hash_list(roots1, "roots1")?;
    let roots2 = hash_list(roots2, "roots2")?;
    let proofs = hash_list(proofs, "proofs")?;
    let offsets = u64_array(proof_offsets, "proof offsets")?;
    let (s1, s2, r1, r2, p, o) = (
        sizes1.as_slice().unwrap_or(&[]),
        sizes2.as_slice().unwrap_or(&[]),
        roots1.hashes(),
        roots2.hashes(),
        proofs.hashes(),
        offsets.as_slice().unwrap_or(&[]),
    );
    let out = py
        .detach(|| proof::verify_consistency_batch(s1, s2, r1, r2, p, o, thread_count(threads)))
        .py_err(py)?;
    Ok(batch_return(py, out))
}

#[pyfunction]
pub fn consistency_proof<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    size1: U64,
    size2: U64,
) -> PyResult<Bound<'py, PyList>> {
    let list = hash_list(leaf_hashes, "leaf hashes")?;
    let leaves = list.hashes();
    let p = py
        .detach(|| proof::consistency_proof(leaves, size1.0, size2.0))
        .py_err(py)?;
    hash_pylist(py, &p)
}

/// A compact Merkle range over leaves `[begin, end)` (see `rekorkit.merkle.CompactRange`).
#[pyclass(module = "rekorkit._native", name = "CompactRange")]
pub struct CompactRange {
    inner: rekorkit_core::CompactRange,
}

#[pymethods]
impl CompactRange {
    #[new]
    #[pyo3(signature = (begin=Uint(0), hashes=None, end=None), text_signature = "(begin=0, hashes=None, end=None)")]
    fn new(
        py: Python<'_>,
        begin: U64,
        hashes: Option<&Bound<'_, PyAny>>,
        end: Option<U64>,
    ) -> PyResult<Self> {
        let nodes = match hashes {
            Some(h) => hash_list(h, "compact range hashes")?.hashes().to_vec(),
            None => Vec::new(),
        };
        let inner = match end {
            Some(end) => {
                rekorkit_core::CompactRange::from_parts(begin.0, end.0, nodes).py_err(py)?
            }
            None if nodes.is_empty() => rekorkit_core::CompactRange::new(begin.0),
            None => {
                return Err(malformed(
                    py,
                    "compact range hashes",
                    "end",
                    "node hashes need the range end (pass end=)",
                ))
            }
        };
        Ok(CompactRange { inner })
    }

    /// First leaf index covered.
    #[getter]
    fn begin(&self) -> u64 {
        self.inner.begin()
    }

    /// One past the last leaf index covered.
    #[getter]
    fn end(&self) -> u64 {
        self.inner.end()
    }

    /// The node hashes, left to right (restore with `CompactRange(begin, hashes, end=end)`).
    #[getter]
    fn hashes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        hash_pylist(py, self.inner.hashes())
    }

    /// Appends one 32-byte leaf hash.
    fn append(&mut self, py: Python<'_>, leaf_hash: &Bound<'_, PyAny>) -> PyResult<()> {
        let h = hash32(leaf_hash, "leaf hash", None)?;
        self.inner.append(h).py_err(py)
    }

    /// Appends many leaf hashes, `(n, 32)`; the GIL is released while hashing.
    fn extend(&mut self, py: Python<'_>, leaf_hashes: &Bound<'_, PyAny>) -> PyResult<()> {
        let list = hash_list(leaf_hashes, "leaf hashes")?;
        let leaves = list.hashes();
        let inner = &mut self.inner;
        py.detach(|| inner.extend(leaves)).py_err(py)
    }

    /// Appends `other`, which must begin where this range ends.
    fn merge(&mut self, py: Python<'_>, other: PyRef<'_, CompactRange>) -> PyResult<()> {
        self.inner.merge(&other.inner).py_err(py)
    }

    /// The tree root of leaves `[0, end)`; raises ValueError unless `begin == 0`.
    fn root<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let h = self.inner.root().py_err(py)?;
        Ok(hash_bytes(py, &h))
    }

    /// An independent copy.
    fn copy(&self) -> CompactRange {
        CompactRange {
            inner: self.inner.clone(),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<CompactRange>()
            .map(|o| o.borrow().inner == self.inner)
            .unwrap_or(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "CompactRange(begin={}, end={}, nodes={})",
            self.inner.begin(),
            self.inner.end(),
            self.inner.hashes().len()
        )
    }
}

type FlatReturn<'py> = (Bound<'py, PyArray2<u8>>, Bound<'py, PyArray1<u64>>);

fn flat_return(py: Python<'_>, flat: proof_tree::FlatProofs) -> PyResult<FlatReturn<'_>> {
    let (hashes, offsets) = flat;
    Ok((
        hashes_to_array(py, hashes)?,
        PyArray1::from_vec(py, offsets),
    ))
}

#[pyfunction]
#[pyo3(signature = (leaf_hashes, indices, size, threads=None))]
pub fn inclusion_proofs<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    size: U64,
    threads: Threads,
) -> PyResult<FlatReturn<'py>> {
    let list = hash_list(leaf_hashes, "leaf hashes")?;
    let indices = u64_array(indices, "indices")?;
    let (leaves, idx) = (list.hashes(), indices.as_slice().unwrap_or(&[]));
    let flat = py
        .detach(|| proof_tree::inclusion_proofs(leaves, idx, size.0, thread_count(threads)))
        .py_err(py)?;
    flat_return(py, flat)
}

#[pyfunction]
#[pyo3(signature = (leaf_hashes, sizes1, size2, threads=None))]
pub fn consistency_proofs<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    sizes1: &Bound<'py, PyAny>,
    size2: U64,
    threads: Threads,
) -> PyResult<FlatReturn<'py>> {
    let list = hash_list(leaf_hashes, "leaf hashes")?;
    let sizes1 = u64_array(sizes1, "sizes1")?;
    let (leaves, s1) = (list.hashes(), sizes1.as_slice().unwrap_or(&[]));
    let flat = py
        .detach(|| proof_tree::consistency_proofs(leaves, s1, size2.0, thread_count(threads)))
        .py_err(py)?;
    flat_return(py, flat)
}
