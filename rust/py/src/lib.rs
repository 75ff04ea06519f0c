//! `rekorkit._native`: the PyO3 module. Only wiring here; buffer handling in
//! `buffers`, error mapping in `errors`, the Merkle functions in `merkle`.
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod buffers;
mod errors;
mod merkle;
mod tiles;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EMPTY_ROOT", PyBytes::new(py, &rekorkit_core::EMPTY_ROOT))?;
    m.add_function(wrap_pyfunction!(merkle::leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::node_hash, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::hash_leaves, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::hash_leaves_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::root, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::verify_inclusion_batch, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::inclusion_proof, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::verify_consistency, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::verify_consistency_batch, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::consistency_proof, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::inclusion_proofs, m)?)?;
    m.add_function(wrap_pyfunction!(merkle::consistency_proofs, m)?)?;
    m.add_class::<merkle::CompactRange>()?;
    tiles::register(m)?;
    Ok(())
}
