//! rekorkit-core: RFC 6962/9162 hashing, Merkle tree roots, inclusion and
//! consistency proofs, C2SP tlog-tiles math and entry bundles.
//!
//! Pure Rust, no Python: the PyO3 glue lives in `rust/py`.
