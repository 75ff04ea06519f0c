"""C2SP tlog-tiles: tile coordinates and paths, hash tiles, entry bundles,
roots and proofs built from tiles, and the right edge a log server appends to.

The per-byte and per-hash work (path parsing, bundle parsing and hashing,
tile hashing, node lookups) runs in the Rust core. Tiles are untrusted: a
root or proof built here is only as good as its check against a signed
checkpoint (see ``rekorkit.checkpoint``), and a monitor must also check
bundles against level-0 tiles and full tiles against their parents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from rekorkit import _native
from rekorkit.errors import MalformedError

__all__ = [
    "HASH_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "AsyncProofBuilder",
    "AsyncReadTile",
    "ProofBuilder",
    "ReadTile",
    "TileAppender",
    "TileID",
    "bundle_prefix_len",
    "consistency_proof_nodes",
    "consistency_proof_tiles",
    "edge_tiles_for_size",
    "encode_entry_bundle",
    "entries_path",
    "entry_columns",
    "hash_entry_bundle",
    "inclusion_proof_nodes",
    "inclusion_proof_tiles",
    "level0_tiles",
    "node_tile",
    "parse_entry_bundle",
    "parse_hash_tile",
    "parse_tile_path",
    "partial_width",
    "root_from_tiles",
    "tile_root",
    "tiles_for_size",
    "verify_bundle_against_tile",
    "verify_bundles_against_tiles",
    "verify_tile_against_parent",
    "verify_tiles_against_parents",
]

TILE_HEIGHT = 8
"""Tree levels per tile (c2sp.org/tlog-tiles: fixed at 8)."""
TILE_WIDTH = 256
"""Hashes in a full tile (c2sp.org/tlog-tiles: 2^8)."""
HASH_SIZE = 32
"""Bytes per hash (SHA-256)."""

_MAX_LEVEL = 63  # c2sp.org/tlog-tiles: <L> is 0..63
_U64 = 1 << 64

Bytes: TypeAlias = bytes | bytearray | memoryview
HashArray: TypeAlias = npt.NDArray[np.uint8]
U64Array: TypeAlias = npt.NDArray[np.uint64]
ReadTile: TypeAlias = Callable[[int, int, int], Bytes]
"""``read_tile(level, index, width) -> bytes``: the hash tile's bytes."""
AsyncReadTile: TypeAlias = Callable[[int, int, int], Awaitable[Bytes]]
"""Async twin of :data:`ReadTile`."""


@dataclass(frozen=True, slots=True)
class TileID:
    """A hash tile: ``level``, ``index``, and ``width`` hashes (256 = full).

    Entry bundle ``N`` belongs to level-0 tile ``N`` and shares its width.
    """

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        for name, low, high in (
            ("level", 0, _MAX_LEVEL),
            ("index", 0, _U64 - 1),
            ("width", 1, TILE_WIDTH),
        ):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or not low <= value <= high:
                raise MalformedError(
                    f"tile {name} {value!r:.40} is outside {low}..{high}", what="tile", where=name
                )

    @property
    def path(self) -> str:
        """The hash-tile path, e.g. ``tile/0/x001/234.p/5``."""
        return _native.tile_path(self.level, self.index, self.width)

    @property
    def entries_path(self) -> str:
        """The entry-bundle path of this level-0 tile."""
        if self.level != 0:
            raise ValueError(f"only level-0 tiles have entry bundles, not level {self.level}")
        return _native.entries_path(self.index, self.width)

    @property
    def is_partial(self) -> bool:
        """Whether this is a partial (``.p/W``) tile."""
        return self.width < TILE_WIDTH


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Path of entry bundle ``index`` holding ``width`` entries."""
    return TileID(0, index, width).entries_path


def parse_tile_path(path: str) -> tuple[TileID, bool]:
    """Strictly parses ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``.

    Returns:
        The tile and whether the path names an entry bundle (then level is 0).

    Raises:
        MalformedError: any non-canonical or out-of-range form (c2sp.org/tlog-tiles).
    """
    level, index, width, is_entries = _native.parse_tile_path(path)
    return TileID(level, index, width), is_entries


def partial_width(level: int, size: int) -> int:
    """Width of the partial tile at ``level`` for tree ``size`` (0: there is none)."""
    return _native.partial_width(level, size)


def tiles_for_size(size: int) -> list[TileID]:
    """The partial tiles of a tree of ``size``: exactly what its root is computed from."""
    return [TileID(*t) for t in _native.tiles_for_size(size)]


def edge_tiles_for_size(size: int) -> list[TileID]:
    """Per level, the last full tile and the partial tile of a tree of ``size``."""
    return [TileID(*t) for t in _native.edge_tiles_for_size(size)]


def level0_tiles(start: int, end: int, size: int) -> list[TileID]:
    """The level-0 tiles (and so entry bundles) covering leaves ``[start, end)``.

    Widths are those of a tree of ``size``: the last tile is partial when
    ``size`` is not a multiple of 256.
    """
    if not 0 <= start <= end <= size:
        raise MalformedError(
            f"need 0 <= start <= end <= size, got [{start}, {end}) of {size}",
            what="argument",
            where="range",
        )
    if start == end:
        return []
    full = size // TILE_WIDTH
    last_width = size % TILE_WIDTH
    first, last = start // TILE_WIDTH, (end - 1) // TILE_WIDTH
    return [TileID(0, n, TILE_WIDTH if n < full else last_width) for n in range(first, last + 1)]


def node_tile(level: int, index: int, size: int) -> tuple[TileID, int, int]:
    """Where perfect node ``(level, index)`` of a tree of ``size`` is stored (c2sp.org/tlog-tiles).

    Returns:
        The tile (with its width for ``size``), and the offset and count of the
        hashes in it that fold pairwise into the node (count = 2^(level mod 8)).

    Raises:
        ValueError: the node is not perfect (not yet immutable) in a tree of ``size``.
    """
    tl, ti, tw, offset, count = _native.node_tile(level, index, size)
    return TileID(tl, ti, tw), offset, count


def inclusion_proof_nodes(index: int, size: int) -> list[list[tuple[int, int]]]:
    """The perfect nodes ``(level, index)`` behind each hash of an inclusion proof.

    A hash with one node is that node; a hash with several is the root of
    those adjacent nodes (the ephemeral right subtree, folded right to left).
    """
    return _native.inclusion_nodes(index, size)


def consistency_proof_nodes(old_size: int, size: int) -> list[list[tuple[int, int]]]:
    """The perfect nodes behind each hash of a consistency proof.

    Same shape as :func:`inclusion_proof_nodes`.
    """
    return _native.consistency_nodes(old_size, size)


def inclusion_proof_tiles(index: int, size: int) -> list[TileID]:
    """The tiles the inclusion proof of leaf ``index`` in a tree of ``size`` reads."""
    return [TileID(*t) for t in _native.inclusion_tiles(index, size)]


def consistency_proof_tiles(old_size: int, size: int) -> list[TileID]:
    """The tiles the consistency proof from ``old_size`` to ``size`` reads."""
    return [TileID(*t) for t in _native.consistency_tiles(old_size, size)]


def parse_hash_tile(data: Bytes, width: int | None = None) -> HashArray:
    """A zero-copy ``(w, 32)`` uint8 view of a hash tile's bytes.

    Raises:
        MalformedError: the length is not a multiple of 32, holds no hash or
            more than 256, or differs from ``width`` hashes when given.
    """
    n = _nbytes(data, "hash tile")
    if n % HASH_SIZE:
        raise MalformedError(
            f"hash tile length {n} is not a multiple of {HASH_SIZE}",
            what="hash tile",
            where=f"byte {n - n % HASH_SIZE}",
        )
    count = n // HASH_SIZE
    if not 1 <= count <= TILE_WIDTH:
        raise MalformedError(
            f"hash tile holds {count} hashes; a tile holds 1..{TILE_WIDTH}",
            what="hash tile",
            where="length",
        )
    if width is not None and count != width:
        raise MalformedError(
            f"hash tile holds {count} hashes, expected {width}", what="hash tile", where="length"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(count, HASH_SIZE)


def _nbytes(data: Bytes, what: str) -> int:
    """Length in bytes of a buffer that numpy and the core can view without a copy."""
    if isinstance(data, bytes | bytearray):
        return len(data)
    if not isinstance(data, memoryview):
        raise MalformedError(
            f"{what}: expected bytes, got {type(data).__name__}", what=what, where="type"
        )
    if not data.c_contiguous:
        raise MalformedError(f"{what}: buffer is not C-contiguous", what=what, where="strides")
    return data.nbytes


def tile_root(tile: Bytes) -> bytes:
    """MTH of a tile's hashes; for a full tile, its hash in the parent tile."""
    return _native.tile_root(tile)


def parse_entry_bundle(data: Bytes) -> list[bytes]:
    """Parses an entry bundle (c2sp.org/tlog-tiles) into its entries.

    Raises:
        MalformedError: a dangling or over-long length, naming the byte offset and entry.
    """
    return _native.parse_entry_bundle(data)


def bundle_prefix_len(data: Bytes, count: int) -> int:
    """Length of the prefix of a bundle that holds exactly its first ``count`` entries.

    Entries after ``count`` are not parsed (a full bundle served in place of a
    partial one is cut to this length).

    Raises:
        MalformedError: the bundle ends early or an entry runs past its end,
            naming the byte offset and entry.
    """
    return _native.bundle_prefix_len(data, count)


def entry_columns(
    bundles: Sequence[Bytes], skip: int, take: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """The entries of consecutive bundles as one buffer plus ``take + 1`` offsets.

    Skips the first ``skip`` entries and takes the next ``take``; the result is
    the layout of an Arrow binary column (entry ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``), built without the GIL.

    Raises:
        MalformedError: a bundle does not parse (naming the bundle, byte and entry).
        ValueError: the bundles hold fewer than ``skip + take`` entries.
    """
    return _native.entry_columns(list(bundles), skip, take)


def encode_entry_bundle(entries: Sequence[Bytes]) -> bytes:
    """Encodes up to 256 entries of at most 65,535 bytes each as an entry bundle."""
    return _native.encode_entry_bundle(list(entries))


def hash_entry_bundle(data: Bytes) -> HashArray:
    """Parses an entry bundle and leaf-hashes every entry: an ``(n, 32)`` uint8 array."""
    return _native.hash_entry_bundle(data)


def verify_bundle_against_tile(bundle: Bytes, tile: Bytes, *, tile_index: int) -> None:
    """Checks that level-0 tile ``tile_index`` holds exactly the bundle's leaf hashes.

    Raises:
        TileError: the first mismatching position (``evidence``: level, index,
            position, expected, actual), or a count mismatch.
        MalformedError: the bundle or tile does not parse.
    """
    _native.verify_bundle_against_tile(bundle, tile, tile_index)


def verify_bundles_against_tiles(
    bundles: Sequence[Bytes],
    tiles: Sequence[Bytes],
    tile_indices: Iterable[int],
    *,
    threads: int | None = None,
) -> None:
    """Batch form of :func:`verify_bundle_against_tile`, run in parallel without the GIL.

    Args:
        bundles: entry bundles.
        tiles: their level-0 hash tiles, in the same order.
        tile_indices: the tiles' indices (for error reports).
        threads: worker threads; ``None`` uses every core, 1 the calling thread.

    Raises:
        TileError: for the first failing bundle in input order.
    """
    _native.verify_bundles_against_tiles(list(bundles), list(tiles), list(tile_indices), threads)


def verify_tile_against_parent(tile: Bytes, parent_hash: Bytes, *, level: int, index: int) -> None:
    """Checks that full tile ``(level, index)`` hashes to its hash in the parent tile.

    Raises:
        TileError: the tile is not full or hashes to something else (evidence
            holds expected and actual).
    """
    _native.verify_tile_against_parent(tile, parent_hash, level, index)


def verify_tiles_against_parents(
    tiles: Sequence[Bytes],
    parent_hashes: HashArray | Bytes,
    *,
    level: int,
    first_index: int,
    threads: int | None = None,
) -> None:
    """Batch form of :func:`verify_tile_against_parent` for consecutive full tiles.

    Tile ``k`` is ``(level, first_index + k)`` and must hash to ``parent_hashes[k]``
    (e.g. a row slice of :func:`parse_hash_tile` of the parent tile).

    Raises:
        TileError: for the first failing tile in order.
    """
    _native.verify_tiles_against_parents(list(tiles), parent_hashes, level, first_index, threads)


def _check_fetched(tile: TileID, data: Bytes) -> Bytes:
    """Accepts exactly ``width`` hashes, or a full tile standing in for a partial one."""
    n = _nbytes(data, "hash tile")
    want = tile.width * HASH_SIZE
    if n == want or (tile.is_partial and n == TILE_WIDTH * HASH_SIZE):
        return data
    raise MalformedError(
        f"{tile.path}: read {n} bytes, expected {want}", what="hash tile", where=tile.path
    )


_TileKey: TypeAlias = tuple[int, int]
_NativeTiles: TypeAlias = list[tuple[int, int, Bytes]]


class _TileCache:
    """Fetched tiles for one tree size, least recently used dropped first."""

    def __init__(self, max_tiles: int) -> None:
        if max_tiles < 1:
            raise ValueError("max_cached_tiles must be at least 1")
        self._tiles: LRUCache[_TileKey, Bytes] = LRUCache(maxsize=max_tiles)
        self.fetches = 0

    def get(self, key: _TileKey) -> Bytes | None:
        return self._tiles.get(key)

    def put(self, key: _TileKey, data: Bytes) -> None:
        self._tiles[key] = data


class ProofBuilder:
    """Builds roots and proofs for one tree size from hash tiles (c2sp.org/tlog-tiles).

    ``read_tile(level, index, width)`` returns a tile's bytes (a full tile in
    place of a partial one is accepted; its first ``width`` hashes are used).
    Each tile is fetched once while cached (``max_cached_tiles``, LRU).
    Results are unverified until checked against a signed checkpoint.
    """

    def __init__(self, size: int, read_tile: ReadTile, *, max_cached_tiles: int = 4096) -> None:
        if not isinstance(size, int | np.integer) or not 0 <= size < _U64:
            raise MalformedError(
                f"tree size {size!r:.40} is outside uint64", what="argument", where="size"
            )
        self.size = size
        self._read = read_tile
        self._cache = _TileCache(max_cached_tiles)

    @property
    def fetches(self) -> int:
        """How many tiles were read so far."""
        return self._cache.fetches

    def _fetch(self, ids: list[TileID]) -> _NativeTiles:
        out: _NativeTiles = []
        for t in ids:
            data = self._cache.get((t.level, t.index))
            if data is None:
                data = _check_fetched(t, self._read(t.level, t.index, t.width))
                self._cache.fetches += 1
                self._cache.put((t.level, t.index), data)
            out.append((t.level, t.index, data))
        return out

    def root(self) -> bytes:
        """The tree root computed from the rightmost tiles."""
        return _native.root_from_tiles(self.size, self._fetch(tiles_for_size(self.size)))

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The inclusion proof (leaf to root) of leaf ``index``."""
        ids = inclusion_proof_tiles(index, self.size)
        return _native.inclusion_proof_from_tiles(index, self.size, self._fetch(ids))

    def inclusion_proofs(self, indices: Iterable[int]) -> tuple[HashArray, U64Array]:
        """Inclusion proofs of many leaves in one native call.

        Returns:
            ``(hashes, offsets)``: proof ``k`` is ``hashes[offsets[k]:offsets[k+1]]``,
            the layout ``rekorkit.merkle.verify_inclusion_batch`` takes. The tiles
            are read once for the batch and nodes shared by proofs hashed once.
        """
        idx = list(indices)
        ids = [TileID(*t) for t in _native.inclusion_tiles_many(idx, self.size)]
        return _native.inclusion_proofs_from_tiles(idx, self.size, self._fetch(ids))

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """The consistency proof from ``old_size`` (``0 < old_size <= size``) to this size.

        ``old_size == size`` gives an empty proof; ``old_size == 0`` raises
        ValueError (RFC 9162 §2.1.4: nothing to prove; check the empty root instead).
        """
        ids = consistency_proof_tiles(old_size, self.size)
        return _native.consistency_proof_from_tiles(old_size, self.size, self._fetch(ids))

    def consistency_proofs(self, old_sizes: Iterable[int]) -> list[list[bytes]]:
        """Consistency proofs from each of ``old_sizes`` to this size.

        The tiles of all of them are read first, once each: proofs to one size
        from nearby older sizes share almost every tile.
        """
        olds = list(old_sizes)
        tiles = self._fetch(_union_consistency_tiles(olds, self.size))
        return [_native.consistency_proof_from_tiles(o, self.size, tiles) for o in olds]


def _union_consistency_tiles(old_sizes: list[int], size: int) -> list[TileID]:
    seen: dict[tuple[int, int], TileID] = {}
    for old in old_sizes:
        for t in _native.consistency_tiles(old, size):
            seen.setdefault((t[0], t[1]), TileID(*t))
    return list(seen.values())


class AsyncProofBuilder:
    """Async twin of :class:`ProofBuilder`: the tiles a call needs are fetched concurrently.

    Concurrent calls share in-flight fetches, so each tile is read once.
    """

    def __init__(
        self, size: int, read_tile: AsyncReadTile, *, max_cached_tiles: int = 4096
    ) -> None:
        if not isinstance(size, int | np.integer) or not 0 <= size < _U64:
            raise MalformedError(
                f"tree size {size!r:.40} is outside uint64", what="argument", where="size"
            )
        self.size = size
        self._read = read_tile
        self._cache = _TileCache(max_cached_tiles)
        self._inflight: dict[_TileKey, asyncio.Future[Bytes]] = {}

    @property
    def fetches(self) -> int:
        """How many tiles were read so far."""
        return self._cache.fetches

    async def _one(self, t: TileID) -> Bytes:
        key = (t.level, t.index)
        data = self._cache.get(key)
        if data is not None:
            return data
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(t))
            self._inflight[key] = pending
        return await asyncio.shield(pending)

    async def _load(self, t: TileID) -> Bytes:
        key = (t.level, t.index)
        try:
            data = _check_fetched(t, await self._read(t.level, t.index, t.width))
            self._cache.fetches += 1
            self._cache.put(key, data)
            return data
        finally:
            self._inflight.pop(key, None)

    async def _fetch(self, ids: list[TileID]) -> _NativeTiles:
        datas = await asyncio.gather(*(self._one(t) for t in ids))
        return [(t.level, t.index, d) for t, d in zip(ids, datas, strict=True)]

    async def root(self) -> bytes:
        """The tree root computed from the rightmost tiles."""
        tiles = await self._fetch(tiles_for_size(self.size))
        return _native.root_from_tiles(self.size, tiles)

    async def inclusion_proof(self, index: int) -> list[bytes]:
        """The inclusion proof (leaf to root) of leaf ``index``."""
        ids = inclusion_proof_tiles(index, self.size)
        return _native.inclusion_proof_from_tiles(index, self.size, await self._fetch(ids))

    async def inclusion_proofs(self, indices: Iterable[int]) -> tuple[HashArray, U64Array]:
        """Inclusion proofs of many leaves (see :meth:`ProofBuilder.inclusion_proofs`)."""
        idx = list(indices)
        ids = [TileID(*t) for t in _native.inclusion_tiles_many(idx, self.size)]
        tiles = await self._fetch(ids)
        return _native.inclusion_proofs_from_tiles(idx, self.size, tiles)

    async def consistency_proof(self, old_size: int) -> list[bytes]:
        """The consistency proof from ``old_size`` to this size (see :class:`ProofBuilder`)."""
        ids = consistency_proof_tiles(old_size, self.size)
        tiles = await self._fetch(ids)
        return _native.consistency_proof_from_tiles(old_size, self.size, tiles)

    async def consistency_proofs(self, old_sizes: Iterable[int]) -> list[list[bytes]]:
        """Consistency proofs from each of ``old_sizes``, tiles read once (see ProofBuilder)."""
        olds = list(old_sizes)
        tiles = await self._fetch(_union_consistency_tiles(olds, self.size))
        return [_native.consistency_proof_from_tiles(o, self.size, tiles) for o in olds]


def root_from_tiles(size: int, read_tile: ReadTile) -> bytes:
    """The root of a tree of ``size`` from its rightmost tiles, read with ``read_tile``."""
    return ProofBuilder(size, read_tile).root()


def _as_hash_array(leaf_hashes: HashArray | Bytes) -> HashArray:
    """Accepts a C-contiguous ``(n, 32)`` uint8 array, or n*32 raw bytes, without copying."""
    if not isinstance(leaf_hashes, np.ndarray):
        n = _nbytes(leaf_hashes, "leaf hashes")
        if n % HASH_SIZE:
            raise MalformedError(
                f"{n} bytes of leaf hashes is not a multiple of {HASH_SIZE}",
                what="leaf hashes",
                where="length",
            )
        return np.frombuffer(leaf_hashes, dtype=np.uint8).reshape(-1, HASH_SIZE)
    if leaf_hashes.dtype != np.uint8:
        raise MalformedError(
            f"leaf hashes have dtype {leaf_hashes.dtype}, expected uint8",
            what="leaf hashes",
            where="dtype",
        )
    if leaf_hashes.ndim != 2 or leaf_hashes.shape[1] != HASH_SIZE:
        raise MalformedError(
            f"leaf hashes have shape {leaf_hashes.shape}, expected (n, 32)",
            what="leaf hashes",
            where="shape",
        )
    if not leaf_hashes.flags.c_contiguous:
        raise MalformedError("leaf hashes are not C-contiguous", what="leaf hashes", where="layout")
    return leaf_hashes


class TileAppender:
    """The right edge of a tiled log, for log servers.

    Holds the partial tile of every level (the tree's compact range, grouped
    by tile). ``append`` returns every tile it created or changed with its
    whole new content: completed tiles as full tiles (no ``.p/`` suffix), and
    each changed level's new partial tile. Write them before publishing a
    checkpoint for the new :attr:`size` and :meth:`root`.

    Args:
        size: the log's current size.
        edge_tiles: the current partial tile of each level with a non-zero
            partial width for ``size`` (level -> bytes of exactly that width).
    """

    def __init__(self, size: int = 0, edge_tiles: Mapping[int, Bytes] | None = None) -> None:
        self._inner = _native.TileAppender(size, list((edge_tiles or {}).items()))

    @property
    def size(self) -> int:
        """Leaves appended so far."""
        return self._inner.size

    def root(self) -> bytes:
        """The root of the tree so far."""
        return self._inner.root()

    @property
    def edge_tiles(self) -> dict[int, bytes]:
        """The current partial tiles (level -> bytes), enough to resume with."""
        return dict(self._inner.edge_tiles())

    def append(self, leaf_hashes: HashArray | Bytes) -> list[tuple[TileID, bytes]]:
        """Appends leaf hashes (``(n, 32)`` uint8); returns the touched tiles, by level then index.

        Raises:
            MalformedError: wrong dtype, shape or layout.
        """
        arr = _as_hash_array(leaf_hashes)
        return [(TileID(lv, ix, w), data) for lv, ix, w, data in self._inner.append(arr)]
