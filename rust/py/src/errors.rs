//! The one place a core [`Error`] becomes a Python exception from `rekorkit.errors`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyType};
use rekorkit_core::Error;

static MALFORMED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INCLUSION: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CONSISTENCY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TILE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

const ERRORS_MODULE: &str = "rekorkit.errors";

fn raise(
    py: Python<'_>,
    cell: &PyOnceLock<Py<PyType>>,
    name: &str,
    message: String,
    kwargs: &Bound<'_, PyDict>,
) -> PyErr {
    let built = cell
        .import(py, ERRORS_MODULE, name)
        .and_then(|cls| cls.call((message,), Some(kwargs)));
    match built {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// Builds the Python exception for a core error.
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let kwargs = PyDict::new(py);
    let filled: PyResult<(&PyOnceLock<Py<PyType>>, &str)> = (|| match &err {
        Error::Malformed {
            what,
            at,
            reason: _,
        } => {
            kwargs.set_item("what", *what)?;
            kwargs.set_item("where", at)?;
            Ok((&MALFORMED, "MalformedError"))
        }
        Error::Inclusion {
            index,
            size,
            reason,
        } => {
            kwargs.set_item("index", index)?;
            kwargs.set_item("size", size)?;
            kwargs.set_item("reason", reason)?;
            Ok((&INCLUSION, "InclusionError"))
        }
        Error::Consistency {
            size1,
            size2,
            reason,
        } => {
            kwargs.set_item("size1", size1)?;
            kwargs.set_item("size2", size2)?;
            kwargs.set_item("reason", reason)?;
            Ok((&CONSISTENCY, "ConsistencyError"))
        }
        Error::Tile {
            level,
            index,
            position,
            reason,
        } => {
            kwargs.set_item("level", level)?;
            kwargs.set_item("index", index)?;
            kwargs.set_item("position", position)?;
            kwargs.set_item("reason", reason)?;
            Ok((&TILE, "TileError"))
        }
        Error::TileHash {
            level,
            index,
            position,
            expected,
            actual,
            reason,
        } => {
            kwargs.set_item("level", level)?;
            kwargs.set_item("index", index)?;
            kwargs.set_item("position", position)?;
            kwargs.set_item("expected", PyBytes::new(py, expected))?;
            kwargs.set_item("actual", PyBytes::new(py, actual))?;
            kwargs.set_item("reason", reason)?;
            Ok((&TILE, "TileError"))
        }
        // Arguments that cannot describe a tree (index >= size, too few entries
        // for `skip + take`): still input, so a `MalformedError`, a ValueError.
        Error::InvalidArgument(_) => {
            kwargs.set_item("what", "argument")?;
            Ok((&MALFORMED, "MalformedError"))
        }
    })();
    match filled {
        Ok((cell, name)) => raise(py, cell, name, message, &kwargs),
        Err(e) => e,
    }
}

/// A `MalformedError` for input rejected at the boundary (shape, dtype, length).
pub fn malformed(
    py: Python<'_>,
    what: &'static str,
    at: impl Into<String>,
    reason: impl Into<String>,
) -> PyErr {
    to_pyerr(
        py,
        Error::Malformed {
            what,
            at: at.into(),
            reason: reason.into(),
        },
    )
}

/// `result.py_err(py)?`: maps a core result at the boundary.
pub trait IntoPyResult<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for rekorkit_core::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
