"""Reading a C2SP tlog-tiles log (Rekor v2): checkpoint, hash tiles, entry bundles.

The readers return raw bytes and check only their shape (a tile is W x 32
bytes, a bundle has W entries); whether they hash up to a signed checkpoint is
decided above them (``rekorkit.tiles``, the verifying clients). Partial tiles
may disappear once the full tile exists, so a 404 on ``.p/W`` falls back to the
full tile and keeps its first W items (TLOG.md §6.3). Bundles may arrive
gzipped with or without ``Content-Encoding`` (TLOG.md §6.1).
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, overload

import anyio
import httpx

from rekorkit.client._http import RequestSpec
from rekorkit.client._session import AsyncSession, SyncSession, _base_urls
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.errors import MalformedError, NotFoundError
from rekorkit.tiles import TileID, bundle_prefix_len

if TYPE_CHECKING:
    from rekorkit.tilecache import TileCache

__all__ = ["AsyncTileReader", "TileReader"]

HASH_SIZE = 32
TILE_WIDTH = 256  # TLOG.md §6.3: tile height 8, 256 hashes per full tile
# A full bundle holds 256 entries of at most 65,535 bytes plus 2-byte lengths
# (TLOG.md §6.4); anything larger is not a bundle.
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xFFFF)
MAX_CHECKPOINT_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"


class _HasTileCoords(Protocol):
    level: int
    index: int
    width: int


# A rekorkit.tiles.TileID or a plain (level, index, width) tuple.
TileKey = tuple[int, int, int] | _HasTileCoords


def _index_path(index: int) -> str:
    """TLOG.md §6.2: 3-digit groups, every group but the last prefixed by ``x``."""
    if index < 0:
        raise ValueError(f"tile index must be >= 0, got {index}")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = 256) -> str:
    """The tlog-tiles path of a hash tile, e.g. ``tile/0/x001/234.p/5``."""
    if not 0 <= level <= 63:
        raise ValueError(f"tile level must be 0..63, got {level}")
    return f"tile/{level}/{_index_path(index)}{_suffix(width)}"


def bundle_path(index: int, width: int = 256) -> str:
    """The tlog-tiles path of an entry bundle, e.g. ``tile/entries/005.p/3``."""
    return f"tile/entries/{_index_path(index)}{_suffix(width)}"


def _check_width(width: int) -> None:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width must be 1..{TILE_WIDTH}, got {width}")


def _tile_spec(level: int, index: int, width: int) -> RequestSpec:
    path = tile_path(level, index, width)
    return RequestSpec("GET", path, content="bytes", max_bytes=TILE_WIDTH * HASH_SIZE)


def _bundle_spec(index: int, width: int) -> RequestSpec:
    return RequestSpec(
        "GET", bundle_path(index, width), content="bytes", max_bytes=MAX_BUNDLE_BYTES
    )


def _checkpoint_spec() -> RequestSpec:
    return RequestSpec("GET", "checkpoint", content="text", max_bytes=MAX_CHECKPOINT_BYTES)


def _shape_tile(data: bytes, level: int, index: int, width: int, url: str) -> bytes:
    """The first ``width`` hashes of ``data``, refusing a tile of the wrong size."""
    need = width * HASH_SIZE
    if len(data) % HASH_SIZE or len(data) < need:
        raise MalformedError(
            f"tile {level}/{index} from {url} has {len(data)} bytes, need {need} "
            f"({width} hashes of {HASH_SIZE})",
            what="hash tile",
            where=f"byte {len(data)}",
        )
    return data[:need]


def _gunzip(data: bytes, url: str) -> bytes:
    """Undo gzip the server applied without ``Content-Encoding``."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = d.decompress(data, MAX_BUNDLE_BYTES + 1)
    except zlib.error:
        # A bundle may legitimately start with these bytes; hashing decides.
        return data
    if len(out) > MAX_BUNDLE_BYTES:
        raise MalformedError(
            f"gzip entry bundle from {url} inflates past {MAX_BUNDLE_BYTES} bytes",
            what="entry bundle",
            where=f"byte {MAX_BUNDLE_BYTES}",
        )
    return out


def _first_entries(data: bytes, width: int, index: int, url: str) -> bytes:
    """The prefix of a bundle holding exactly its first ``width`` entries."""
    try:
        return data[: bundle_prefix_len(data, width)]
    except MalformedError as exc:
        raise MalformedError(
            f"entry bundle {index} from {url}: {exc}", what="entry bundle", where=exc.where
        ) from exc


def bundle_entry(data: bytes, position: int) -> bytes:
    """Entry ``position`` of an entry bundle (TLOG.md §6.4), walking the length prefixes.

    Raises:
        MalformedError: the bundle ends before that entry does.
    """
    start = bundle_prefix_len(data, position)
    return data[start + 2 : bundle_prefix_len(data, position + 1)]


class _TileCache:
    """A small LRU of tiles by (level, index, width).

    A tile path names immutable content (TLOG.md §6.1: tiles and bundles are
    immutable, only the checkpoint changes), so caching by path is safe; what
    the bytes are worth is still decided by verification above the reader.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int]) -> bytes | None:
        if not self.size:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[int, int, int], value: bytes) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def _key(tile: TileKey) -> tuple[int, int, int]:
    if isinstance(tile, tuple):
        return tile
    return (tile.level, tile.index, tile.width)


class TileReader:
    """Blocking reader for a tlog-tiles log (Rekor v2 read API).

    Args:
        base_url: the log's read prefix, or an ordered list of mirrors.
        transport: an httpx transport (``MockTransport`` in tests).
        retry: the retry policy (default :class:`RetryPolicy`).
        timeout: the timeouts (default :class:`Timeouts`).
        max_concurrency: the connection-pool size.
        http2: use HTTP/2 (needs the ``http2`` extra).
        failover: a prepared :class:`Failover` (else one over ``base_url``).
        cache_tiles: keep this many tiles in an LRU (tile paths are immutable).
        cache: a persistent tile cache (``rekorkit.tilecache``), read before the
            network and filled from it; its bytes are as unverified as the network's.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | None = None,
        max_concurrency: int = 16,
        http2: bool = False,
        failover: Failover | None = None,
        cache_tiles: int = 0,
        cache: TileCache | None = None,
    ) -> None:
        self._cache = _TileCache(cache_tiles)
        self._store = cache
        self._session = SyncSession(
            base_url,
            transport=transport,
            retry=retry,
            timeout=timeout,
            failover=failover,
            http2=http2,
            max_connections=max_concurrency,
        )

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checkpoint(self) -> bytes:
        """The current (unverified) signed checkpoint bytes."""
        return self._session.request(_checkpoint_spec()).body

    def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """Hash tile ``level/index`` of ``width`` hashes (partial 404 -> full tile)."""
        _check_width(width)
        cached = self._cache.get((level, index, width))
        if cached is not None:
            return cached
        stored = self._store.get(TileID(level, index, width)) if self._store else None
        if stored is not None:
            self._cache.put((level, index, width), stored)
            return stored
        try:
            raw = self._session.request(_tile_spec(level, index, width))
        except NotFoundError:
            if width == TILE_WIDTH:
                raise
            raw = self._session.request(_tile_spec(level, index, TILE_WIDTH))
        data = _shape_tile(raw.body, level, index, width, raw.url)
        if self._store is not None:
            self._store.put(TileID(level, index, width), data)
        self._cache.put((level, index, width), data)
        return data

    def read_tile(self, level: int, index: int, width: int) -> bytes:
        """Alias of :meth:`tile` in the shape ``rekorkit.tiles.ProofBuilder`` calls."""
        return self.tile(level, index, width)

    def entry_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """Entry bundle ``index`` holding ``width`` entries (gzip undone, partial 404 -> full)."""
        _check_width(width)
        stored = self._store.get(TileID(0, index, width), entries=True) if self._store else None
        if stored is not None:
            return stored
        try:
            raw = self._session.request(_bundle_spec(index, width))
        except NotFoundError:
            if width == TILE_WIDTH:
                raise
            raw = self._session.request(_bundle_spec(index, TILE_WIDTH))
        data = _first_entries(_gunzip(raw.body, raw.url), width, index, raw.url)
        if self._store is not None:
            self._store.put(TileID(0, index, width), data, entries=True)
        return data

    def tiles(self, ids: Iterable[TileKey]) -> list[bytes]:
        """Several tiles, in order (sequentially; use :class:`AsyncTileReader` for fan-out)."""
        return [self.tile(*_key(t)) for t in ids]


class AsyncTileReader:
    """Awaitable twin of :class:`TileReader` with bounded-concurrency batch reads.

    Args:
        base_url: the log's read prefix, or an ordered list of mirrors.
        transport: an httpx async transport (``MockTransport`` in tests).
        retry: the retry policy.
        timeout: the timeouts.
        max_concurrency: the most requests in flight at once.
        http2: use HTTP/2 (needs the ``http2`` extra).
        failover: a prepared :class:`Failover` (else one over ``base_url``).
        cache_tiles: keep this many tiles in an LRU (tile paths are immutable).
        cache: a persistent tile cache (``rekorkit.tilecache``), read before the
            network and filled from it; its bytes are as unverified as the network's.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | None = None,
        max_concurrency: int = 16,
        http2: bool = False,
        failover: Failover | None = None,
        cache_tiles: int = 0,
        cache: TileCache | None = None,
    ) -> None:
        self._cache = _TileCache(cache_tiles)
        self._store = cache
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        failover = failover or Failover(_base_urls(base_url))
        self._session = AsyncSession(
            base_url,
            transport=transport,
            retry=retry,
            timeout=timeout,
            failover=failover,
            http2=http2,
            max_connections=max_concurrency,
        )
        self._limit = anyio.CapacityLimiter(max_concurrency)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    async def __aenter__(self) -> AsyncTileReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def checkpoint(self) -> bytes:
        """The current (unverified) signed checkpoint bytes."""
        async with self._limit:
            return (await self._session.request(_checkpoint_spec())).body

    async def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """Hash tile ``level/index`` of ``width`` hashes (partial 404 -> full tile)."""
        _check_width(width)
        cached = self._cache.get((level, index, width))
        if cached is not None:
            return cached
        stored = self._store.get(TileID(level, index, width)) if self._store else None
        if stored is not None:
            self._cache.put((level, index, width), stored)
            return stored
        async with self._limit:
            try:
                raw = await self._session.request(_tile_spec(level, index, width))
            except NotFoundError:
                if width == TILE_WIDTH:
                    raise
                raw = await self._session.request(_tile_spec(level, index, TILE_WIDTH))
        data = _shape_tile(raw.body, level, index, width, raw.url)
        if self._store is not None:
            self._store.put(TileID(level, index, width), data)
        self._cache.put((level, index, width), data)
        return data

    async def read_tile(self, level: int, index: int, width: int) -> bytes:
        """Alias of :meth:`tile` in the shape ``AsyncProofBuilder`` calls."""
        return await self.tile(level, index, width)

    async def entry_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """Entry bundle ``index`` holding ``width`` entries (gzip undone, partial 404 -> full)."""
        _check_width(width)
        stored = self._store.get(TileID(0, index, width), entries=True) if self._store else None
        if stored is not None:
            return stored
        async with self._limit:
            try:
                raw = await self._session.request(_bundle_spec(index, width))
            except NotFoundError:
                if width == TILE_WIDTH:
                    raise
                raw = await self._session.request(_bundle_spec(index, TILE_WIDTH))
        data = _first_entries(_gunzip(raw.body, raw.url), width, index, raw.url)
        if self._store is not None:
            self._store.put(TileID(0, index, width), data, entries=True)
        return data

    @overload
    async def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: Literal[False] = ...
    ) -> list[bytes]: ...
    @overload
    async def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: bool
    ) -> list[bytes | Exception]: ...
    async def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: bool = False
    ) -> list[bytes] | list[bytes | Exception]:
        """Many hash tiles, in the order given, at most ``max_concurrency`` in flight.

        With ``return_exceptions``, a read that fails (after retries) gives its
        exception in its place instead of raising, as ``asyncio.gather`` does.
        """
        keys: list[tuple[int, ...]] = [_key(t) for t in ids]
        return await self._gather([(self.tile, k) for k in keys], return_exceptions)

    @overload
    async def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: Literal[False] = ...
    ) -> list[bytes]: ...
    @overload
    async def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: bool
    ) -> list[bytes | Exception]: ...
    async def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: bool = False
    ) -> list[bytes] | list[bytes | Exception]:
        """Many entry bundles ``(index, width)``, in order, bounded concurrency.

        ``return_exceptions`` as for :meth:`tiles`.
        """
        keys: list[tuple[int, ...]] = list(ids)
        return await self._gather([(self.entry_bundle, tuple(k)) for k in keys], return_exceptions)

    async def _gather(
        self,
        calls: list[tuple[Callable[..., Awaitable[bytes]], tuple[int, ...]]],
        return_exceptions: bool = False,
    ) -> list[bytes | Exception]:
        results: list[bytes | Exception] = [b""] * len(calls)
        pending = iter(range(len(calls)))
        failed: list[int] = []

        # A fixed pool of workers, not one task per call: memory stays bounded
        # by the concurrency, not by the length of the batch. A failure stops
        # the workers taking new reads and is raised as itself (the first in
        # input order), not wrapped in an exception group.
        async def worker() -> None:
            for i in pending:
                fn, args = calls[i]
                try:
                    results[i] = await fn(*args)
                except Exception as exc:
                    results[i] = exc
                    if not return_exceptions:
                        failed.append(i)
                        return

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(calls))):
                tg.start_soon(worker)
        if failed:
            raise results[min(failed)]  # type: ignore[misc]
        return results
