//! Zero-copy input: `bytes` and C-contiguous numpy arrays in, `&[Hash]` / `&[u8]` out.
//!
//! Anything that would need a silent copy (wrong dtype, non-contiguous,
//! wrong shape) is refused with a `MalformedError` that says what was wrong.

use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use rekorkit_core::Hash;

use crate::errors::malformed;

/// Reinterprets bytes as hashes. The caller checked `bytes.len() % 32 == 0`.
fn bytes_as_hashes(bytes: &[u8]) -> &[Hash] {
    let n = bytes.len() / 32;
    // SAFETY: `[u8; 32]` has size 32 and alignment 1, so the first `32 * n`
    // bytes of any byte slice form a valid `[[u8; 32]]` of length `n` that
    // lives exactly as long as the input borrow.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<Hash>(), n) }
}

/// A borrowed list of hashes: `bytes` of `32 * n` or a uint8 array of shape `(n, 32)`.
pub enum HashList<'py> {
    Bytes(Bound<'py, PyBytes>),
    Array(PyReadonlyArray2<'py, u8>),
    Owned(Vec<Hash>),
}

impl HashList<'_> {
    pub fn hashes(&self) -> &[Hash] {
        match self {
            HashList::Bytes(b) => bytes_as_hashes(b.as_bytes()),
            // Contiguity and shape were checked on extraction.
            HashList::Array(a) => bytes_as_hashes(a.as_slice().unwrap_or(&[])),
            HashList::Owned(v) => v,
        }
    }
}

fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype()
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Checks a numpy array is C-contiguous uint8 with the given number of dims.
fn check_u8_array(
    py: Python<'_>,
    arr: &Bound<'_, PyUntypedArray>,
    what: &'static str,
    ndim: usize,
) -> PyResult<()> {
    if !arr.dtype().is_equiv_to(&numpy::dtype::<u8>(py)) {
        return Err(malformed(
            py,
            what,
            "dtype",
            format!("expected dtype uint8, got {}", dtype_name(arr)),
        ));
    }
    let shape = arr.shape();
    if arr.ndim() != ndim || (ndim == 2 && shape[1] != 32) {
        let want = if ndim == 2 { "(n, 32)" } else { "(n,)" };
        return Err(malformed(
            py,
            what,
            "shape",
            format!("expected shape {want}, got {shape:?}"),
        ));
    }
    if !arr.is_c_contiguous() {
        return Err(malformed(
            py,
            what,
            "strides",
            "array is not C-contiguous (use numpy.ascontiguousarray)",
        ));
    }
    Ok(())
}

/// Extracts a hash list without copying; a Python list of 32-byte `bytes` is copied.
pub fn hash_list<'py>(obj: &Bound<'py, PyAny>, what: &'static str) -> PyResult<HashList<'py>> {
    let py = obj.py();
    if let Ok(b) = obj.cast::<PyBytes>() {
        let len = b.as_bytes().len();
        if len % 32 != 0 {
            return Err(malformed(
                py,
                what,
                format!("byte {}", len - len % 32),
                format!("length {len} is not a multiple of 32"),
            ));
        }
        return Ok(HashList::Bytes(b.clone()));
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        check_u8_array(py, arr, what, 2)?;
        let typed = obj.cast::<PyArray2<u8>>().map_err(PyErr::from)?;
        let ro = typed
            .try_readonly()
            .map_err(|e| malformed(py, what, "array", e.to_string()))?;
        return Ok(HashList::Array(ro));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            out.push(hash32(&item?, what, Some(i))?);
        }
        return Ok(HashList::Owned(out));
    }
    Err(malformed(
        py,
        what,
        "type",
        format!(
            "expected bytes, a uint8 array of shape (n, 32) or a list/tuple of bytes, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    ))
}

/// One 32-byte hash from `bytes`.
pub fn hash32(obj: &Bound<'_, PyAny>, what: &'static str, index: Option<usize>) -> PyResult<Hash> {
    let py = obj.py();
    let at = || index.map_or_else(|| "value".to_string(), |i| format!("index {i}"));
    let b = obj.cast::<PyBytes>().map_err(|_| {
        malformed(
            py,
            what,
            at(),
            format!(
                "expected bytes, got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
        )
    })?;
    <Hash>::try_from(b.as_bytes()).map_err(|_| {
        malformed(
            py,
            what,
            at(),
            format!("expected 32 bytes, got {}", b.as_bytes().len()),
        )
    })
}

/// A borrowed byte buffer: `bytes` or a 1-D uint8 array.
pub enum ByteBuf<'py> {
    Bytes(Bound<'py, PyBytes>),
    Array(PyReadonlyArray1<'py, u8>),
}

impl ByteBuf<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            ByteBuf::Bytes(b) => b.as_bytes(),
            ByteBuf::Array(a) => a.as_slice().unwrap_or(&[]),
        }
    }
}

pub fn byte_buf<'py>(obj: &Bound<'py, PyAny>, what: &'static str) -> PyResult<ByteBuf<'py>> {
    let py = obj.py();
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(ByteBuf::Bytes(b.clone()));
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        check_u8_array(py, arr, what, 1)?;
        let typed = obj.cast::<PyArray1<u8>>().map_err(PyErr::from)?;
        let ro = typed
            .try_readonly()
            .map_err(|e| malformed(py, what, "array", e.to_string()))?;
        return Ok(ByteBuf::Array(ro));
    }
    Err(malformed(
        py,
        what,
        "type",
        "expected bytes or a 1-D uint8 array",
    ))
}

/// A contiguous uint64 array (the Python layer converts other integer inputs).
pub fn u64_array<'py>(
    obj: &Bound<'py, PyAny>,
    what: &'static str,
) -> PyResult<PyReadonlyArray1<'py, u64>> {
    let py = obj.py();
    let arr = obj
        .cast::<PyArray1<u64>>()
        .map_err(|_| malformed(py, what, "dtype", "expected a 1-D uint64 array"))?;
    if !arr.is_c_contiguous() {
        return Err(malformed(py, what, "strides", "array is not C-contiguous"));
    }
    arr.try_readonly()
        .map_err(|e| malformed(py, what, "array", e.to_string()))
}

/// Hashes out as one `(n, 32)` uint8 array, without copying the Vec.
pub fn hashes_to_array(py: Python<'_>, hashes: Vec<Hash>) -> PyResult<Bound<'_, PyArray2<u8>>> {
    let n = hashes.len();
    PyArray1::from_vec(py, hashes.into_flattened()).reshape([n, 32])
}
