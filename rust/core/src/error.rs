//! The core's error enum. The PyO3 glue maps each variant, once, to the
//! matching Python exception in `rekorkit.errors`.

use std::fmt;

/// Every way a core operation can fail. Errors are values; the core never panics on input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Input that does not parse: `what` it was, `at` where (byte offset, index, field).
    Malformed {
        what: &'static str,
        at: String,
        reason: String,
    },
    /// An inclusion proof or leaf check failed.
    Inclusion {
        index: u64,
        size: u64,
        reason: String,
    },
    /// A consistency proof failed.
    Consistency {
        size1: u64,
        size2: u64,
        reason: String,
    },
    /// A tile or entry bundle does not hash to what it must.
    Tile {
        level: u64,
        index: u64,
        position: Option<u64>,
        reason: String,
    },
    /// A tile or entry bundle hash differs from the hash it must equal; carries both.
    TileHash {
        level: u64,
        index: u64,
        position: Option<u64>,
        expected: [u8; 32],
        actual: [u8; 32],
        reason: String,
    },
    /// Arguments that cannot describe a tree (e.g. index >= size when building a proof).
    InvalidArgument(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed { what, at, reason } => {
                write!(f, "malformed {what} at {at}: {reason}")
            }
            Error::Inclusion {
                index,
                size,
                reason,
            } => {
                write!(
                    f,
                    "inclusion proof for index {index} in tree size {size}: {reason}"
                )
            }
            Error::Consistency {
                size1,
                size2,
                reason,
            } => {
                write!(
                    f,
                    "consistency proof from size {size1} to {size2}: {reason}"
                )
            }
            Error::Tile {
                level,
                index,
                position,
                reason,
            } => match position {
                Some(p) => write!(f, "tile {level}/{index} position {p}: {reason}"),
                None => write!(f, "tile {level}/{index}: {reason}"),
            },
            Error::TileHash {
                level,
                index,
                position,
                reason,
                ..
            } => match position {
                Some(p) => write!(f, "tile {level}/{index} position {p}: {reason}"),
                None => write!(f, "tile {level}/{index}: {reason}"),
            },
            Error::InvalidArgument(reason) => write!(f, "invalid argument: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
