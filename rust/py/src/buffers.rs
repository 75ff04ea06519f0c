//! Input at the edge: the one byte view of the binding, hash lists cast from
//! it, and integer arguments checked before they reach the core.
//!
//! A view never copies `bytes`, read-only buffers or numpy arrays (borrowed
//! read-only through numpy's borrow checker). A writable buffer (`bytearray`,
//! a `memoryview` of one) is copied once: the core reads views with the GIL
//! released, and another thread could otherwise change the bytes under it.
//! Anything that would need a silent conversion (wrong dtype, non-contiguous,
//! wrong shape, a length that is not whole hashes) is refused with a
//! `MalformedError` that says what was wrong.

use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rekorkit_core::Hash;

use crate::errors::malformed;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Borrowed (or, for writable exporters, copied) input bytes.
pub enum ByteView<'py> {
    /// `bytes`: immutable.
    Bytes(Bound<'py, PyBytes>),
    /// A C-contiguous numpy uint8 array, borrowed read-only.
    Array(PyReadonlyArrayDyn<'py, u8>),
    /// A read-only, C-contiguous buffer of bytes (e.g. a `memoryview` of `bytes`).
    Frozen(PyBuffer<u8>),
    /// A copy: of a writable buffer, or of a list of hashes.
    Owned(Vec<u8>),
}

impl ByteView<'_> {
    /// The viewed bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ByteView::Bytes(b) => b.as_bytes(),
            // Contiguity was checked when the view was made.
            ByteView::Array(a) => a.as_slice().unwrap_or(&[]),
            ByteView::Frozen(buf) => {
                let len = buf.len_bytes();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the exporter declared the buffer read-only and
                // C-contiguous with u8 items (checked in `byte_view`), so
                // `buf_ptr` points at `len_bytes` initialised bytes nobody
                // writes; holding the `PyBuffer` keeps them alive and in place
                // for as long as `self`, and so the returned slice, lives.
                unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), len) }
            }
            ByteView::Owned(v) => v,
        }
    }

    /// The bytes as 32-byte hashes; callers made the view with [`hash_list`]
    /// (or checked the length), so no partial hash is dropped.
    pub fn hashes(&self) -> &[Hash] {
        bytemuck::try_cast_slice(self.bytes()).unwrap_or(&[])
    }
}

/// Checks a numpy array is C-contiguous uint8, then borrows it read-only.
fn array_view<'py>(
    arr: &Bound<'py, PyUntypedArray>,
    what: &'static str,
) -> PyResult<PyReadonlyArrayDyn<'py, u8>> {
    let py = arr.py();
    if !arr.dtype().is_equiv_to(&numpy::dtype::<u8>(py)) {
        let dtype = arr.dtype().str().map(|s| s.to_string()).unwrap_or_default();
        return Err(malformed(
            py,
            what,
            "dtype",
            format!("expected dtype uint8, got {dtype}"),
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
    arr.cast::<PyArrayDyn<u8>>()
        .map_err(PyErr::from)?
        .try_readonly()
        .map_err(|e| malformed(py, what, "array", e.to_string()))
}

/// Views `bytes`, a C-contiguous uint8 numpy array or any C-contiguous byte buffer.
pub fn byte_view<'py>(obj: &Bound<'py, PyAny>, what: &'static str) -> PyResult<ByteView<'py>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(ByteView::Bytes(b.clone()));
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        return array_view(arr, what).map(ByteView::Array);
    }
    let py = obj.py();
    let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
        malformed(
            py,
            what,
            "type",
            format!("expected bytes or a uint8 buffer, got {}", type_name(obj)),
        )
    })?;
    if !buf.is_c_contiguous() {
        return Err(malformed(py, what, "strides", "buffer is not C-contiguous"));
    }
    if buf.readonly() {
        return Ok(ByteView::Frozen(buf));
    }
    Ok(ByteView::Owned(buf.to_vec(py)?))
}

/// Views a list of hashes: `bytes` of `32 * n`, a uint8 array of shape
/// `(n, 32)`, another byte buffer of `32 * n`, or a list/tuple of 32-byte
/// `bytes` (copied).
pub fn hash_list<'py>(obj: &Bound<'py, PyAny>, what: &'static str) -> PyResult<ByteView<'py>> {
    let py = obj.py();
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        let shape = arr.shape();
        if arr.ndim() != 2 || shape[1] != 32 {
            return Err(malformed(
                py,
                what,
                "shape",
                format!("expected shape (n, 32), got {shape:?}"),
            ));
        }
        return array_view(arr, what).map(ByteView::Array);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            out.extend_from_slice(&hash32(&item?, what, Some(i))?);
        }
        return Ok(ByteView::Owned(out));
    }
    let view = byte_view(obj, what).map_err(|_| {
        malformed(
            py,
            what,
            "type",
            format!(
                "expected bytes, a uint8 array of shape (n, 32) or a list/tuple of bytes, got {}",
                type_name(obj)
            ),
        )
    })?;
    let len = view.bytes().len();
    if len % 32 != 0 {
        return Err(malformed(
            py,
            what,
            format!("byte {}", len - len % 32),
            format!("length {len} is not a multiple of 32"),
        ));
    }
    Ok(view)
}

/// One 32-byte hash from `bytes` or a byte buffer; `index` places it in a list.
pub fn hash32(obj: &Bound<'_, PyAny>, what: &'static str, index: Option<usize>) -> PyResult<Hash> {
    let py = obj.py();
    let at = || index.map_or_else(|| "value".to_string(), |i| format!("index {i}"));
    let view = byte_view(obj, what).map_err(|_| {
        malformed(
            py,
            what,
            at(),
            format!("expected bytes, got {}", type_name(obj)),
        )
    })?;
    let bytes = view.bytes();
    <Hash>::try_from(bytes).map_err(|_| {
        malformed(
            py,
            what,
            at(),
            format!("expected 32 bytes, got {}", bytes.len()),
        )
    })
}

/// A `str` argument as UTF-8; a lone surrogate (which UTF-8 cannot hold)
/// or another type is a `MalformedError`, not a `UnicodeEncodeError`.
pub fn text(obj: &Bound<'_, PyAny>, what: &'static str) -> PyResult<String> {
    let py = obj.py();
    let s = obj.cast::<PyString>().map_err(|_| {
        malformed(
            py,
            what,
            "type",
            format!("expected str, got {}", type_name(obj)),
        )
    })?;
    s.to_str().map(str::to_owned).map_err(|_| {
        malformed(
            py,
            what,
            "text",
            "not valid Unicode text (a lone surrogate)",
        )
    })
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
    flat_hashes_to_array(py, hashes.into_flattened())
}

/// Concatenated hashes out as one `(len / 32, 32)` uint8 array, without a copy.
pub fn flat_hashes_to_array(py: Python<'_>, flat: Vec<u8>) -> PyResult<Bound<'_, PyArray2<u8>>> {
    let n = flat.len() / 32;
    PyArray1::from_vec(py, flat).reshape([n, 32])
}

/// An unsigned integer argument: anything else (negative, too large, not an
/// integer) is a `MalformedError` at the edge, before the core sees it.
/// Python notes which argument it was ("while processing 'skip'").
#[derive(Debug, Clone, Copy)]
pub struct Uint<T>(pub T);

/// An integer argument in `0..2^64`.
pub type U64 = Uint<u64>;

/// A `threads=` argument: `None` (every core) or a count the core checks.
pub type Threads = Option<Uint<usize>>;

/// The count a `threads=` argument asks for.
pub fn thread_count(t: Threads) -> Option<usize> {
    t.map(|t| t.0)
}

impl<'a, 'py, T: TryFrom<u64>> FromPyObject<'a, 'py> for Uint<T> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Some(v) = obj.extract::<u64>().ok().and_then(|v| T::try_from(v).ok()) {
            return Ok(Uint(v));
        }
        let bits = 8 * std::mem::size_of::<T>();
        // A huge int's repr can itself fail (Python's digit limit): then its type.
        let shown = obj
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| type_name(&obj));
        let shown: String = if shown.chars().count() > 40 {
            shown.chars().take(40).chain("...".chars()).collect()
        } else {
            shown
        };
        Err(malformed(
            obj.py(),
            "integer argument",
            "value",
            format!("expected an integer in [0, 2^{bits}), got {shown}"),
        ))
    }
}
