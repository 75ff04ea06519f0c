"""Reading a C2SP tlog-tiles log (Rekor v2): checkpoint, hash tiles, entry bundles.

The readers return raw bytes and check only their shape (a tile is W x 32
bytes, a bundle has W entries); whether they hash up to a signed checkpoint is
decided above them (``rekorkit.tiles``, the verifying clients). Partial tiles
may disappear once the full tile exists, so a 404 on ``.p/W`` falls back to the
full tile and keeps its first W items (c2sp.org/tlog-tiles). Bundles may arrive
gzipped with or without ``Content-Encoding`` (c2sp.org/tlog-tiles).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, overload

import httpx
from cachetools import LRUCache

from rekorkit.client._base import AsyncShell, SyncShell, bounded_map
from rekorkit.client._flow import Flow
from rekorkit.client._http import RawResponse, RequestSpec
from rekorkit.client._session import HTTP2, SessionConfig
from rekorkit.client.adaptive import ADAPTIVE_CEILING, AdaptiveWindow, WindowGate, WindowPolicy
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.errors import MalformedError, NotFoundError
from rekorkit.tiles import HASH_SIZE, TILE_WIDTH, TileID, bundle_prefix_len, entries_path

if TYPE_CHECKING:
    from rekorkit.tilecache import TileCache

__all__ = ["AsyncTileReader", "TileReader"]

K = TypeVar("K")

# A full bundle holds 256 entries of at most 65,535 bytes plus 2-byte lengths
# (c2sp.org/tlog-tiles); anything larger is not a bundle.
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xFFFF)
MAX_CHECKPOINT_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"


class _HasTileCoords(Protocol):
    # Read-only, so frozen dataclasses (rekorkit.tiles.TileID) match.
    @property
    def level(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def width(self) -> int: ...


# A rekorkit.tiles.TileID or a plain (level, index, width) tuple.
TileKey = tuple[int, int, int] | _HasTileCoords


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The tlog-tiles path of a hash tile, e.g. ``tile/0/x001/234.p/5``."""
    return TileID(level, index, width).path


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """The tlog-tiles path of an entry bundle, e.g. ``tile/entries/005.p/3``."""
    return entries_path(index, width)


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


def _first_entries(data: bytes, width: int, index: int, url: str) -> bytes:
    """The prefix of a bundle holding exactly its first ``width`` entries."""
    try:
        return data[: bundle_prefix_len(data, width)]
    except MalformedError as exc:
        raise MalformedError(
            f"entry bundle {index} from {url}: {exc}", what="entry bundle", where=exc.where
        ) from exc


def bundle_entry(data: bytes, position: int) -> bytes:
    """Entry ``position`` of an entry bundle (c2sp.org/tlog-tiles), walking the length prefixes.

    Raises:
        MalformedError: the bundle ends before that entry does.
    """
    start = bundle_prefix_len(data, position)
    return data[start + 2 : bundle_prefix_len(data, position + 1)]


def _gunzip_bundle(raw: RawResponse) -> bytes:
    """Undo gzip the server applied without ``Content-Encoding`` (never a second layer)."""
    data = raw.body
    if not data.startswith(_GZIP_MAGIC) or "content-encoding" in raw.headers:
        return data
    try:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = d.decompress(data, MAX_BUNDLE_BYTES + 1)
    except zlib.error:
        # A bundle may legitimately start with these bytes; hashing decides.
        return data
    if len(out) > MAX_BUNDLE_BYTES:
        raise MalformedError(
            f"gzip entry bundle from {raw.url} inflates past {MAX_BUNDLE_BYTES} bytes",
            what="entry bundle",
            where=f"byte {MAX_BUNDLE_BYTES}",
        )
    return out


def _key(tile: TileKey) -> tuple[int, int, int]:
    if isinstance(tile, tuple):
        return tile
    return (tile.level, tile.index, tile.width)


def tile_flow(level: int, index: int, width: int) -> Flow[bytes]:
    """Hash tile ``level/index`` of ``width`` hashes; a 404 on a partial tile reads the full one.

    Partial tiles may be deleted once the full tile exists (c2sp.org/tlog-tiles).
    """
    _check_width(width)
    try:
        raw: RawResponse = yield _tile_spec(level, index, width)
    except NotFoundError:
        if width == TILE_WIDTH:
            raise
        raw = yield _tile_spec(level, index, TILE_WIDTH)
    return _shape_tile(raw.body, level, index, width, raw.url)


def bundle_flow(index: int, width: int) -> Flow[bytes]:
    """Entry bundle ``index`` with ``width`` entries; partial 404 -> the full bundle."""
    _check_width(width)
    try:
        raw: RawResponse = yield _bundle_spec(index, width)
    except NotFoundError:
        if width == TILE_WIDTH:
            raise
        raw = yield _bundle_spec(index, TILE_WIDTH)
    return _first_entries(_gunzip_bundle(raw), width, index, raw.url)


def checkpoint_flow() -> Flow[bytes]:
    """The current (unverified) signed checkpoint bytes."""
    raw: RawResponse = yield _checkpoint_spec()
    return raw.body


class _LocalTiles:
    """What a reader holds before the network: hash tiles in an LRU, and a persistent cache.

    A tile path names immutable content (c2sp.org/tlog-tiles: tiles and
    bundles never change, only the checkpoint does), so caching by path is
    safe; what the bytes are worth is still decided by verification above.
    The LRU (``size`` tiles, none when 0) holds hash tiles only.
    """

    def __init__(self, size: int, store: TileCache | None) -> None:
        self._lru: LRUCache[tuple[int, int, int], bytes] | None = (
            LRUCache(maxsize=size) if size > 0 else None
        )
        self._lock = threading.Lock()
        self._store = store

    def _remember(self, key: tuple[int, int, int], data: bytes) -> bytes:
        if self._lru is not None:
            with self._lock:
                self._lru[key] = data
        return data

    def tile(self, key: tuple[int, int, int]) -> bytes | None:
        """The tile held for ``(level, index, width)``, or None."""
        if self._lru is not None:
            with self._lock:
                held = self._lru.get(key)
            if held is not None:
                return held
        stored = self._store.get(TileID(*key)) if self._store is not None else None
        return None if stored is None else self._remember(key, stored)

    def keep_tile(self, key: tuple[int, int, int], data: bytes) -> bytes:
        """Hold a tile read from the network; return it."""
        if self._store is not None:
            self._store.put(TileID(*key), data)
        return self._remember(key, data)

    def bundle(self, index: int, width: int) -> bytes | None:
        """The entry bundle held for ``(index, width)``, or None."""
        return self._store.get(TileID(0, index, width), entries=True) if self._store else None

    def keep_bundle(self, index: int, width: int, data: bytes) -> bytes:
        """Hold an entry bundle read from the network; return it."""
        if self._store is not None:
            self._store.put(TileID(0, index, width), data, entries=True)
        return data


def _each(
    fn: Callable[[K], bytes], items: list[K], return_exceptions: bool
) -> list[bytes] | list[bytes | Exception]:
    """``[fn(x) for x in items]``; with ``return_exceptions`` a failure takes its item's place."""
    if not return_exceptions:
        return [fn(x) for x in items]
    out: list[bytes | Exception] = []
    for x in items:
        try:
            out.append(fn(x))
        except Exception as exc:
            out.append(exc)
    return out


class TileReader(SyncShell):
    """Blocking reader for a tlog-tiles log (Rekor v2 read API).

    Args:
        base_url: the log's read prefix, or an ordered list of mirrors.
        transport: an httpx transport (``MockTransport`` in tests).
        retry: the retry policy (default :class:`RetryPolicy`).
        timeout: seconds per request (the deadline), or :class:`Timeouts`.
        failover: a prepared :class:`Failover` (else one over ``base_url``).
        http2: offer HTTP/2 over TLS; ``"auto"`` (default) when ``h2`` is
            installed (the ``http2`` extra), ``True`` requires it.
        max_concurrency: the connection-pool size.
        trust_env: honour proxy and CA variables from the environment, as httpx does.
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
        timeout: float | Timeouts | None = None,
        failover: Failover | None = None,
        http2: HTTP2 = "auto",
        max_concurrency: int = ADAPTIVE_CEILING,
        trust_env: bool = True,
        cache_tiles: int = 0,
        cache: TileCache | None = None,
    ) -> None:
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        super().__init__(base_url, config, transport=transport)
        self._local = _LocalTiles(cache_tiles, cache)

    def checkpoint(self) -> bytes:
        """The current (unverified) signed checkpoint bytes."""
        return self._run(checkpoint_flow())

    def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """Hash tile ``level/index`` of ``width`` hashes (partial 404 -> full tile)."""
        key = (level, index, width)
        held = self._local.tile(key)
        if held is not None:
            return held
        return self._local.keep_tile(key, self._run(tile_flow(*key)))

    def read_tile(self, level: int, index: int, width: int) -> bytes:
        """Alias of :meth:`tile` in the shape ``rekorkit.tiles.ProofBuilder`` calls."""
        return self.tile(level, index, width)

    def entry_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """Entry bundle ``index`` holding ``width`` entries (gzip undone, partial 404 -> full)."""
        held = self._local.bundle(index, width)
        if held is not None:
            return held
        return self._local.keep_bundle(index, width, self._run(bundle_flow(index, width)))

    @overload
    def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: Literal[False] = ...
    ) -> list[bytes]: ...
    @overload
    def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: bool
    ) -> list[bytes | Exception]: ...
    def tiles(
        self, ids: Iterable[TileKey], *, return_exceptions: bool = False
    ) -> list[bytes] | list[bytes | Exception]:
        """Many hash tiles, in the order given (one after the other: the async twin fans out).

        With ``return_exceptions``, a read that fails (after retries) gives its
        exception in its place instead of raising, as ``asyncio.gather`` does.
        """
        return _each(lambda k: self.tile(*k), [_key(t) for t in ids], return_exceptions)

    @overload
    def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: Literal[False] = ...
    ) -> list[bytes]: ...
    @overload
    def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: bool
    ) -> list[bytes | Exception]: ...
    def entry_bundles(
        self, ids: Iterable[tuple[int, int]], *, return_exceptions: bool = False
    ) -> list[bytes] | list[bytes | Exception]:
        """Many entry bundles ``(index, width)``, in order.

        ``return_exceptions`` as for :meth:`tiles`.
        """
        return _each(lambda k: self.entry_bundle(*k), list(ids), return_exceptions)


class AsyncTileReader(AsyncShell):
    """Awaitable twin of :class:`TileReader` with adaptive-concurrency batch reads.

    Args: as :class:`TileReader`; ``max_concurrency`` is the most requests in
    flight (and the connection-pool size), 256 by default: batch reads adapt
    to the link below it.

    Attributes:
        gate: the bound on the batch calls' (:meth:`tiles`, :meth:`entry_bundles`)
            reads in flight. By default an adaptive window
            (:class:`~rekorkit.client.adaptive.AdaptiveWindow`) that grows while
            throughput grows and backs off on queueing, 429/503, errors and slow
            connects, up to ``max_concurrency``; assign ``WindowGate(n)`` for a
            fixed ``n``. ``rekorkit.audit.verify_tile_log`` reads through it too.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | Timeouts | None = None,
        failover: Failover | None = None,
        http2: HTTP2 = "auto",
        max_concurrency: int = ADAPTIVE_CEILING,
        trust_env: bool = True,
        cache_tiles: int = 0,
        cache: TileCache | None = None,
    ) -> None:
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        super().__init__(base_url, config, transport=transport)
        self.gate = WindowGate(AdaptiveWindow(WindowPolicy(ceiling=max_concurrency)))
        # Read through the attribute, so a gate assigned later gets the samples.
        self._session.watch_connects(lambda seconds: self.gate.on_connect(seconds))
        self._local = _LocalTiles(cache_tiles, cache)

    async def checkpoint(self) -> bytes:
        """The current (unverified) signed checkpoint bytes."""
        return await self._run(checkpoint_flow())

    async def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """Hash tile ``level/index`` of ``width`` hashes (partial 404 -> full tile)."""
        key = (level, index, width)
        held = self._local.tile(key)
        if held is not None:
            return held
        return self._local.keep_tile(key, await self._run(tile_flow(*key)))

    async def read_tile(self, level: int, index: int, width: int) -> bytes:
        """Alias of :meth:`tile` in the shape ``AsyncProofBuilder`` calls."""
        return await self.tile(level, index, width)

    async def entry_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """Entry bundle ``index`` holding ``width`` entries (gzip undone, partial 404 -> full)."""
        held = self._local.bundle(index, width)
        if held is not None:
            return held
        return self._local.keep_bundle(index, width, await self._run(bundle_flow(index, width)))

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
        """Many hash tiles, in the order given, as many in flight as :attr:`gate` allows.

        With ``return_exceptions``, a read that fails (after retries) gives its
        exception in its place instead of raising, as ``asyncio.gather`` does.
        """
        return await bounded_map(
            lambda k: self.gate.run(self.tile, *k),
            [_key(t) for t in ids],
            self.max_concurrency,
            return_exceptions=return_exceptions,
        )

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
        """Many entry bundles ``(index, width)``, in order, through :attr:`gate`.

        ``return_exceptions`` as for :meth:`tiles`.
        """
        return await bounded_map(
            lambda k: self.gate.run(self.entry_bundle, *k),
            list(ids),
            self.max_concurrency,
            return_exceptions=return_exceptions,
        )
