# Hand-written stub for the PyO3 module rekorkit._native (checked by mypy.stubtest).
# Public API and documentation live in rekorkit.merkle / rekorkit.tiles.

from collections.abc import Iterable, Sequence
from typing import TypeAlias, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "TileAppender",
    "__version__",
    "bundle_prefix_len",
    "consistency_nodes",
    "consistency_proof",
    "consistency_proof_from_tiles",
    "consistency_proofs",
    "consistency_tiles",
    "edge_tiles_for_size",
    "encode_entry_bundle",
    "entries_path",
    "entry_columns",
    "hash_entry_bundle",
    "hash_leaves",
    "hash_leaves_buffer",
    "inclusion_nodes",
    "inclusion_proof",
    "inclusion_proof_from_tiles",
    "inclusion_proofs",
    "inclusion_proofs_from_tiles",
    "inclusion_tiles",
    "inclusion_tiles_many",
    "leaf_hash",
    "node_hash",
    "node_tile",
    "parse_entry_bundle",
    "parse_tile_path",
    "partial_width",
    "root",
    "root_from_edge_tiles",
    "root_from_tiles",
    "tile_path",
    "tile_root",
    "tiles_for_size",
    "verify_bundle_against_tile",
    "verify_bundles_against_tiles",
    "verify_consistency",
    "verify_consistency_batch",
    "verify_inclusion",
    "verify_inclusion_batch",
    "verify_tile_against_parent",
    "verify_tiles_against_parents",
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
def inclusion_proofs(
    leaf_hashes: object, indices: _U64Array, size: int, threads: int | None = None
) -> tuple[_HashArray, _U64Array]: ...
def consistency_proofs(
    leaf_hashes: object, sizes1: _U64Array, size2: int, threads: int | None = None
) -> tuple[_HashArray, _U64Array]: ...

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

_Bytes: TypeAlias = bytes | bytearray | memoryview
_TileTriple: TypeAlias = tuple[int, int, int]

# --- tiles (rust/py/src/tiles.rs) ---
def tile_path(level: int, index: int, width: int) -> str: ...
def entries_path(index: int, width: int) -> str: ...
def parse_tile_path(path: str) -> tuple[int, int, int, bool]: ...
def partial_width(level: int, size: int) -> int: ...
def tiles_for_size(size: int) -> list[_TileTriple]: ...
def edge_tiles_for_size(size: int) -> list[_TileTriple]: ...
def tile_root(tile: _Bytes) -> bytes: ...
def parse_entry_bundle(data: _Bytes) -> list[bytes]: ...
def bundle_prefix_len(data: _Bytes, count: int) -> int: ...
def entry_columns(
    bundles: Sequence[_Bytes], skip: int, take: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]: ...
def encode_entry_bundle(entries: Sequence[_Bytes]) -> bytes: ...
def hash_entry_bundle(data: _Bytes) -> _HashArray: ...
def verify_bundle_against_tile(bundle_data: _Bytes, tile: _Bytes, tile_index: int) -> None: ...
def verify_bundles_against_tiles(
    bundles: Sequence[_Bytes],
    tiles_data: Sequence[_Bytes],
    tile_indices: Sequence[int],
    threads: int | None = None,
) -> None: ...
def verify_tile_against_parent(
    tile: _Bytes, parent_hash: _Bytes, level: int, index: int
) -> None: ...
def verify_tiles_against_parents(
    tiles_data: Sequence[_Bytes],
    parent_hashes: _Bytes | _HashArray,
    level: int,
    first_index: int,
    threads: int | None = None,
) -> None: ...
def inclusion_nodes(index: int, size: int) -> list[list[tuple[int, int]]]: ...
def consistency_nodes(old: int, size: int) -> list[list[tuple[int, int]]]: ...
def node_tile(level: int, index: int, size: int) -> tuple[int, int, int, int, int]: ...
def inclusion_tiles_many(indices: Sequence[int], size: int) -> list[_TileTriple]: ...
def inclusion_proofs_from_tiles(
    indices: Sequence[int], size: int, tiles: Sequence[tuple[int, int, _Bytes]]
) -> tuple[_HashArray, npt.NDArray[np.uint64]]: ...
def inclusion_tiles(index: int, size: int) -> list[_TileTriple]: ...
def consistency_tiles(old: int, size: int) -> list[_TileTriple]: ...
def inclusion_proof_from_tiles(
    index: int, size: int, tiles: Sequence[tuple[int, int, _Bytes]]
) -> list[bytes]: ...
def consistency_proof_from_tiles(
    old: int, size: int, tiles: Sequence[tuple[int, int, _Bytes]]
) -> list[bytes]: ...
def root_from_tiles(size: int, tiles: Sequence[tuple[int, int, _Bytes]]) -> bytes: ...
def root_from_edge_tiles(edge: Sequence[tuple[int, _Bytes]]) -> bytes: ...

@final
class TileAppender:
    def __new__(
        cls, size: int = 0, edge_tiles: Sequence[tuple[int, _Bytes]] | None = None
    ) -> TileAppender: ...
    @property
    def size(self) -> int: ...
    def root(self) -> bytes: ...
    def edge_tiles(self) -> list[tuple[int, bytes]]: ...
    def append(self, leaf_hashes: _HashArray | _Bytes) -> list[tuple[int, int, int, bytes]]: ...
