# Hand-written stub for the PyO3 module rekorkit._native (checked by mypy.stubtest).
# Public API and documentation live in rekorkit.merkle / rekorkit.tiles.

from collections.abc import Iterable
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "__version__",
    "consistency_proof",
    "hash_leaves",
    "hash_leaves_buffer",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_consistency_batch",
    "verify_inclusion",
    "verify_inclusion_batch",
]

__version__: str
EMPTY_ROOT: bytes

_HashArray = npt.NDArray[np.uint8]
_U64Array = npt.NDArray[np.uint64]
_Hashes = _HashArray | bytes | list[bytes] | tuple[bytes, ...]

def leaf_hash(data: bytes) -> bytes: ...
def node_hash(left: bytes, right: bytes) -> bytes: ...
def hash_leaves(entries: Iterable[bytes], threads: int | None = None) -> _HashArray: ...
def hash_leaves_buffer(
    buf: bytes | _HashArray, offsets: _U64Array, threads: int | None = None
) -> _HashArray: ...
def root(leaf_hashes: object, threads: int | None = None) -> bytes: ...
def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: object, root: bytes
) -> None: ...
def verify_inclusion_batch(
    leaf_hashes: object,
    indices: _U64Array,
    sizes: _U64Array,
    proofs: object,
    proof_offsets: _U64Array,
    roots: object,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.bool_], int | None, str | None]: ...
def inclusion_proof(leaf_hashes: object, index: int, size: int) -> list[bytes]: ...
def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: object
) -> None: ...
def verify_consistency_batch(
    sizes1: _U64Array,
    sizes2: _U64Array,
    roots1: object,
    roots2: object,
    proofs: object,
    proof_offsets: _U64Array,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.bool_], int | None, str | None]: ...
def consistency_proof(leaf_hashes: object, size1: int, size2: int) -> list[bytes]: ...

@final
class CompactRange:
    """A compact Merkle range: the perfect subtrees covering leaves ``[begin, end)``."""

    def __new__(
        cls, begin: int = 0, hashes: _Hashes | None = None, end: int | None = None
    ) -> CompactRange: ...
    @property
    def begin(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def hashes(self) -> list[bytes]: ...
    def append(self, leaf_hash: bytes) -> None: ...
    def extend(self, leaf_hashes: _Hashes) -> None: ...
    def merge(self, other: CompactRange) -> None: ...
    def root(self) -> bytes: ...
    def copy(self) -> CompactRange: ...
    def __eq__(self, value: object, /) -> bool: ...
