//! rekorkit-core: RFC 6962/9162 hashing, Merkle tree roots, inclusion and
//! consistency proofs, C2SP tlog-tiles math and entry bundles.
//!
//! Pure Rust, no Python: the PyO3 glue lives in `rust/py`.

pub mod appender;
pub mod batch;
pub mod bundle;
pub mod compact;
pub mod error;
pub mod hash;
pub mod proof;
pub mod proof_tree;
mod sha_ni;
pub mod tile_proof;
pub mod tiles;
pub mod tree;

pub use compact::CompactRange;
pub use error::{Error, Result};
pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT};
