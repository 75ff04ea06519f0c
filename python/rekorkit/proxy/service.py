"""The proxy's core: verify before serve, independent of HTTP.

The service holds the latest checkpoint it verified (log signature and
origin, consistency with the previous one, root recomputed from the right
edge's tiles: c2sp.org/tlog-tiles and RFC 9162 §2.1.4). A tile is served only
once it hashes up to that checkpoint: a full tile must hash to its entry in
its (verified) parent tile, a partial tile is on the authenticated right
edge, and an entry bundle must leaf-hash to its verified level-0 tile. Until
then nothing is cached, so a tampered tile is refused with evidence and
never reaches the cache or a client.

Concurrent requests for one tile share one load; verified tiles are kept in
memory (a bounded LRU) in front of the :class:`~rekorkit.tilecache.FileSystemTileCache`,
whose blobs are re-hashed on every read and re-verified once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import cachetools
import httpx

from rekorkit import merkle, tiles
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint
from rekorkit.client import AsyncTileReader, Failover, RetryPolicy, Timeouts
from rekorkit.client.adaptive import ADAPTIVE_CEILING
from rekorkit.errors import (
    ConsistencyError,
    DivergenceError,
    MalformedError,
    RekorAPIError,
    TileError,
    VerificationError,
)
from rekorkit.note import NoteVerifier
from rekorkit.proxy.metrics import ProxyMetrics
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import TILE_WIDTH, TileID

__all__ = ["NotInTreeError", "ProxyService", "Served"]

log = logging.getLogger(__name__)

_HASH = tiles.HASH_SIZE
_ENTRIES = -1  # key kind of entry bundles; hash tiles use their level
_CHECKPOINT_STATE = "proxy.checkpoint"
_MIN_REFRESH = 1.0  # seconds between refreshes that requests beyond the tree may cause
T = TypeVar("T")


class NotInTreeError(LookupError):
    """The tile is not part of the tree the proxy has verified (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Served:
    """A verified body to serve.

    Attributes:
        body: the bytes.
        etag: the strong ETag (quoted SHA-256 of the body).
        immutable: a full tile or bundle (its content can never change).
    """

    body: bytes
    etag: str
    immutable: bool


def _served(body: bytes, immutable: bool, digest: bytes | None = None) -> Served:
    return Served(body, f'"{(digest or hashlib.sha256(body).digest()).hex()}"', immutable)


def _width_in(level: int, index: int, size: int) -> int:
    """The width of tile ``(level, index)`` in a tree of ``size``; 0 if it is not there."""
    try:
        tile, _, _ = tiles.node_tile(level * tiles.TILE_HEIGHT, index * TILE_WIDTH, size)
    except ValueError:
        return 0
    return tile.width


class ProxyService:
    """Verifying tile proxy state for one upstream log.

    Args:
        upstream: the upstream log's tile prefix (or mirrors, in order).
        cache: the tile cache (only verified tiles are written to it).
        verifier: the log's checkpoint key.
        origin: the expected checkpoint origin (default: the key name).
        transport: an httpx async transport for the upstream (tests).
        checkpoint_ttl: seconds a verified checkpoint is served before the
            upstream is asked again on a request.
        memory_bytes: bound on the verified tiles kept in memory.
        max_concurrency: the most upstream requests in flight (the sync job's
            reads adapt to the link below it).
        retry, timeout: upstream retry policy and timeouts.
    """

    def __init__(
        self,
        upstream: str | Sequence[str],
        cache: FileSystemTileCache,
        verifier: NoteVerifier,
        *,
        origin: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        checkpoint_ttl: float = 5.0,
        memory_bytes: int = 64 << 20,
        max_concurrency: int = ADAPTIVE_CEILING,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | None = None,
    ) -> None:
        urls = [upstream] if isinstance(upstream, str) else list(upstream)
        self.upstream_urls = tuple(urls)
        self.cache = cache
        self.verifier = verifier
        self.origin = origin
        self.checkpoint_ttl = checkpoint_ttl
        self.metrics = ProxyMetrics()
        self._reader = AsyncTileReader(
            urls,
            transport=transport,
            retry=retry or RetryPolicy(max_attempts=2, base_delay=0.05, total_budget=10.0),
            timeout=timeout or Timeouts(connect=2.0, read=10.0, total=20.0),
            max_concurrency=max_concurrency,
            failover=Failover(urls, failure_threshold=5, reset_timeout=2.0),
        )
        # Verified hash tiles (what children are checked against), apart from the
        # bodies, so that a scan of large bundles cannot push them out.
        self._hot: cachetools.LRUCache[tuple[int, int, int], bytes] = cachetools.LRUCache(
            maxsize=memory_bytes // 4, getsizeof=len
        )
        self._served: cachetools.LRUCache[tuple[int, int, int], Served] = cachetools.LRUCache(
            maxsize=memory_bytes, getsizeof=lambda s: len(s.body)
        )
        # SHA-256 of each tile verified in this process: a cached blob with that
        # digest (re-hashed by the cache on every read) needs no second verification.
        self._digests: cachetools.LRUCache[tuple[int, int, int], bytes] = cachetools.LRUCache(
            maxsize=1 << 20
        )
        self._inflight: dict[object, asyncio.Future[Any]] = {}
        self._checkpoint: SignedCheckpoint | None = None
        self._edge: dict[tuple[int, int], bytes] = {}
        self._checked_at = float("-inf")
        self.upstream_size: int | None = None
        self.last_refresh: float | None = None
        self.last_error: dict[str, Any] | None = None
        self.refused: VerificationError | MalformedError | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Resume from the last checkpoint this cache verified, if any (no network needed)."""
        raw = await asyncio.to_thread(self.cache.get_state, _CHECKPOINT_STATE)
        if raw is None:
            return
        try:
            signed = open_checkpoint(raw, self.verifier, origin=self.origin)
            edge = await self._authenticate_edge(signed, self._cached_or_upstream)
        except (VerificationError, MalformedError, RekorAPIError) as exc:
            log.warning("stored checkpoint not usable: %s", exc)
            return
        self._install(signed, edge)

    async def aclose(self) -> None:
        """Close the upstream connections (the cache is the caller's)."""
        await self._reader.aclose()

    @property
    def checkpoint(self) -> SignedCheckpoint | None:
        """The latest checkpoint verified (what ``/checkpoint`` serves)."""
        return self._checkpoint

    # -- coalescing --------------------------------------------------------

    async def _once(self, key: object, load: Callable[[], Awaitable[T]]) -> T:
        """Run ``load`` once for all concurrent callers with the same ``key``."""
        pending = self._inflight.get(key)
        if pending is None:

            async def run() -> T:
                try:
                    return await load()
                finally:
                    self._inflight.pop(key, None)

            pending = asyncio.ensure_future(run())
            self._inflight[key] = pending
        result: T = await asyncio.shield(pending)
        return result

    # -- upstream reads ----------------------------------------------------

    async def _upstream(self, kind: str, read: Awaitable[bytes]) -> bytes:
        t0 = time.perf_counter()
        try:
            data = await read
        except RekorAPIError:
            self.metrics.upstream_errors.labels(kind).inc()
            raise
        finally:
            self.metrics.upstream_latency.labels(kind).observe(time.perf_counter() - t0)
        self.metrics.upstream_bytes.labels(kind).inc(len(data))
        return data

    async def _upstream_tile(self, level: int, index: int, width: int) -> bytes:
        try:
            return await self._upstream("tile", self._reader.tile(level, index, width))
        except MalformedError as exc:
            raise TileError(
                f"upstream tile {level}/{index}: {exc}", level=level, index=index, where=exc.where
            ) from exc

    async def _cached_or_upstream(self, level: int, index: int, width: int) -> bytes:
        data = await asyncio.to_thread(self.cache.get, TileID(level, index, width))
        return data if data is not None else await self._upstream_tile(level, index, width)

    # -- checkpoints -------------------------------------------------------

    async def _authenticate_edge(
        self, signed: SignedCheckpoint, read: Callable[[int, int, int], Awaitable[bytes]]
    ) -> dict[tuple[int, int], bytes]:
        """Reads the right edge's tiles and checks they hash to the signed root."""
        edge: dict[tuple[int, int], bytes] = {}

        async def read_tile(level: int, index: int, width: int) -> bytes:
            data = await read(level, index, width)
            edge[(level, index)] = data[: width * _HASH]
            return data

        if signed.size == 0:
            return edge
        root = await tiles.AsyncProofBuilder(signed.size, read_tile).root()
        if root != signed.root:
            raise TileError(
                f"the right-edge tiles of size {signed.size} hash to {root.hex()}, "
                f"not the signed root {signed.root.hex()}",
                size=signed.size,
                expected=signed.root,
                actual=root,
                checkpoint=signed.raw.decode("utf-8", "replace"),
            )
        return edge

    def _install(self, signed: SignedCheckpoint, edge: dict[tuple[int, int], bytes]) -> None:
        self._checkpoint = signed
        self._edge = edge
        self._checked_at = time.monotonic()
        self.metrics.checkpoint_size.set(signed.size)

    async def refresh(self) -> SignedCheckpoint:
        """Fetch, verify and adopt the upstream checkpoint (concurrent calls share one).

        Raises:
            SignatureError, CheckpointError, MalformedError: the checkpoint is refused.
            DivergenceError: it is not consistent with the one held (evidence: both).
            TileError: the upstream's edge tiles do not hash to its signed root.
            RekorAPIError: the upstream could not be read.
        """
        return await self._once("checkpoint", self._refresh)

    async def _refresh(self) -> SignedCheckpoint:
        self.last_refresh = time.time()
        self._checked_at = time.monotonic()
        try:
            raw = await self._upstream("checkpoint", self._reader.checkpoint())
            signed = await self._adopt(raw)
        except (VerificationError, MalformedError) as exc:
            self.refused = exc
            self._record_error("checkpoint", exc)
            self.metrics.verification_failures.labels("checkpoint").inc()
            raise
        except RekorAPIError as exc:
            self._record_error("checkpoint", exc)
            raise
        self.refused = None
        return signed

    async def _adopt(self, raw: bytes) -> SignedCheckpoint:
        try:
            signed = open_checkpoint(raw, self.verifier, origin=self.origin)
        except VerificationError as exc:
            exc.evidence.setdefault("checkpoint", raw.decode("utf-8", "replace"))
            raise
        self.upstream_size = signed.size
        old = self._checkpoint
        if old is not None and signed.raw == old.raw:
            return old
        fetched: dict[tuple[int, int], bytes] = {}

        async def read(level: int, index: int, width: int) -> bytes:
            data = fetched.get((level, index))
            if data is None or len(data) < width * _HASH:
                data = fetched[(level, index)] = await self._upstream_tile(level, index, width)
            return data

        edge = await self._authenticate_edge(signed, read)
        if old is not None:
            await self._check_consistent(old, signed, read)
        # The tiles a checkpoint commits to are durable before it is adopted.
        puts = [(TileID(lv, ix, len(d) // _HASH), False, d) for (lv, ix), d in edge.items()]
        await asyncio.to_thread(self.cache.put_many, puts)
        await asyncio.to_thread(self.cache.pin_edge, signed.size)
        await asyncio.to_thread(self.cache.set_state, _CHECKPOINT_STATE, signed.raw)
        self._install(signed, edge)
        return signed

    async def _check_consistent(
        self,
        old: SignedCheckpoint,
        new: SignedCheckpoint,
        read: Callable[[int, int, int], Awaitable[bytes]],
    ) -> None:
        evidence = {
            "old": old.raw.decode("utf-8", "replace"),
            "new": new.raw.decode("utf-8", "replace"),
            "old_size": old.size,
            "new_size": new.size,
            "old_root": old.root,
            "new_root": new.root,
        }
        if new.size < old.size:
            raise DivergenceError(
                f"upstream checkpoint size {new.size} is smaller than the verified {old.size}",
                **evidence,
            )
        if new.size == old.size or old.size == 0:
            if new.size == old.size and new.root != old.root:
                raise DivergenceError(f"two roots for tree size {old.size}", **evidence)
            return
        proof = await tiles.AsyncProofBuilder(new.size, read).consistency_proof(old.size)
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except ConsistencyError as exc:
            raise DivergenceError(
                f"upstream checkpoint {new.size} is not consistent with the verified "
                f"{old.size}: {exc}",
                **evidence,
            ) from exc

    async def current_checkpoint(self) -> SignedCheckpoint:
        """The checkpoint to serve: refreshed when older than ``checkpoint_ttl``.

        An upstream outage serves the last verified checkpoint; a refused
        upstream checkpoint raises (clients must hear of it).
        """
        if self._checkpoint is None or time.monotonic() - self._checked_at > self.checkpoint_ttl:
            try:
                await self.refresh()
            except RekorAPIError:
                if self._checkpoint is None:
                    raise
        if self.refused is not None:
            raise self.refused
        assert self._checkpoint is not None
        return self._checkpoint

    def _record_error(self, what: str, exc: BaseException) -> None:
        evidence = getattr(exc, "evidence", None) or {}
        self.last_error = {
            "what": what,
            "time": time.time(),
            "type": type(exc).__name__,
            "message": str(exc),
            "evidence": evidence,
        }

    async def _size_for(self, level: int, index: int, width: int) -> SignedCheckpoint:
        """A verified checkpoint whose tree holds tile ``(level, index)`` at ``width``.

        Refreshes if the proxy's checkpoint is behind the request, at most once
        per ``_MIN_REFRESH`` seconds (requests beyond the tree cannot make the
        proxy hammer its upstream).

        Raises:
            NotInTreeError: the upstream's verified tree does not hold it either.
        """
        cp = self._checkpoint or await self.current_checkpoint()
        stale = time.monotonic() - self._checked_at > _MIN_REFRESH
        if _width_in(level, index, cp.size) < width and stale:
            with contextlib.suppress(RekorAPIError):  # an outage keeps the verified tree
                cp = await self.refresh()
        if _width_in(level, index, cp.size) < width:
            raise NotInTreeError(
                f"tile {level}/{index} of width {width} is beyond the verified tree size {cp.size}"
            )
        return cp

    # -- tiles and bundles -------------------------------------------------

    async def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> Served:
        """Hash tile ``(level, index)`` of ``width`` hashes, verified.

        Raises:
            NotInTreeError: beyond the verified tree.
            TileError: the upstream's tile does not hash up to the checkpoint.
            RekorAPIError: not cached, and the upstream could not be read.
        """
        key = (level, index, width)
        hit = self._served.get(key)
        if hit is not None:
            self.metrics.hits.labels("tile").inc()
            return hit
        cp = await self._size_for(level, index, width)
        data = await self._verified_tile(level, index, cp)
        digest = self._digests.get((level, index, width)) if width == TILE_WIDTH else None
        served = _served(data[: width * _HASH], width == TILE_WIDTH, digest)
        self._served[key] = served
        return served

    async def bundle(self, index: int, width: int = TILE_WIDTH) -> Served:
        """Entry bundle ``index`` holding ``width`` entries, verified (see :meth:`tile`)."""
        key = (_ENTRIES, index, width)
        hit = self._served.get(key)
        if hit is not None:
            self.metrics.hits.labels("entries").inc()
            return hit
        cp = await self._size_for(0, index, width)
        whole = await self._verified_bundle(index, cp)
        if width == _width_in(0, index, cp.size):
            return whole
        served = _served(whole.body[: tiles.bundle_prefix_len(whole.body, width)], False)
        self._served[key] = served
        return served

    async def _verified_tile(self, level: int, index: int, cp: SignedCheckpoint) -> bytes:
        """Tile ``(level, index)`` at its width in ``cp``'s tree, verified up to ``cp``."""
        width = _width_in(level, index, cp.size)
        if width == 0:
            raise NotInTreeError(f"tile {level}/{index} is not in a tree of size {cp.size}")
        if width < TILE_WIDTH:
            edge = self._edge.get((level, index)) if cp is self._checkpoint else None
            if edge is None:
                raise NotInTreeError(f"partial tile {level}/{index} is not on the verified edge")
            return edge
        hot = self._hot.get((level, index, width))
        if hot is not None:
            return hot
        return await self._once(("tile", level, index), lambda: self._load_tile(level, index, cp))

    async def _load_tile(self, level: int, index: int, cp: SignedCheckpoint) -> bytes:
        tid = TileID(level, index)
        parent = await self._verified_tile(level + 1, index // TILE_WIDTH, cp)
        pos = (index % TILE_WIDTH) * _HASH
        want = parent[pos : pos + _HASH]
        key = (level, index, TILE_WIDTH)
        data = await self._from_cache(key, tid, False, want)
        if data is None:
            self.metrics.misses.labels("tile").inc()
            data = await self._upstream_tile(level, index, TILE_WIDTH)
            try:
                tiles.verify_tile_against_parent(data, want, level=level, index=index)
            except TileError as exc:
                self._refuse("tile", exc, cp, path=tid.path)
            await asyncio.to_thread(self.cache.put, tid, data)
            self._digests[key] = hashlib.sha256(data).digest()
        else:
            self.metrics.hits.labels("tile").inc()
        self._hot[key] = data
        return data

    async def _from_cache(
        self, key: tuple[int, int, int], tid: TileID, entries: bool, against: bytes
    ) -> bytes | None:
        """A cached tile (``against``: its parent hash) or bundle (``against``: its
        verified tile), verified unless this process verified the same blob before."""
        hit = await asyncio.to_thread(self.cache.get_with_digest, tid, entries=entries)
        if hit is None:
            return None
        data, digest = hit
        if digest is not None and self._digests.get(key) == digest:
            return data
        try:
            if entries:
                tiles.verify_bundle_against_tile(data, against, tile_index=tid.index)
            else:
                tiles.verify_tile_against_parent(data, against, level=tid.level, index=tid.index)
        except (TileError, MalformedError):
            return None  # not written by a verifying proxy (a reader's cache): fetch again
        self._digests[key] = digest or hashlib.sha256(data).digest()
        return data

    async def _verified_bundle(self, index: int, cp: SignedCheckpoint) -> Served:
        """Bundle ``index`` at its width in ``cp``'s tree, verified up to ``cp``."""
        width = _width_in(0, index, cp.size)
        hit = self._served.get((_ENTRIES, index, width))
        if hit is not None:
            return hit
        return await self._once(
            ("entries", index, width), lambda: self._load_bundle(index, width, cp)
        )

    async def _load_bundle(self, index: int, width: int, cp: SignedCheckpoint) -> Served:
        tid = TileID(0, index, width)
        tile = await self._verified_tile(0, index, cp)
        key = (_ENTRIES, index, width)
        data = await self._from_cache(key, tid, True, tile)
        if data is None:
            self.metrics.misses.labels("entries").inc()
            try:
                data = await self._upstream("entries", self._reader.entry_bundle(index, width))
                tiles.verify_bundle_against_tile(data, tile, tile_index=index)
            except (TileError, MalformedError) as exc:
                self._refuse("entries", exc, cp, path=tid.entries_path)
            await asyncio.to_thread(self.cache.put, tid, data, entries=True)
            self._digests[key] = hashlib.sha256(data).digest()
        else:
            self.metrics.hits.labels("entries").inc()
        served = self._served[key] = _served(data, width == TILE_WIDTH, self._digests.get(key))
        return served

    def _refuse(self, kind: str, exc: Exception, cp: SignedCheckpoint, *, path: str) -> NoReturn:
        """Raise the upstream's bad tile as a TileError carrying re-checkable evidence."""
        error = exc if isinstance(exc, TileError) else TileError(str(exc))
        error.evidence.setdefault("path", path)
        error.evidence.setdefault("checkpoint", cp.raw.decode("utf-8", "replace"))
        error.evidence.setdefault("upstream", self.upstream_urls[0])
        self.metrics.verification_failures.labels(kind).inc()
        self._record_error(path, error)
        raise error from exc

    # -- sync support ------------------------------------------------------

    async def prefetch_edge(self) -> int:
        """Verify and cache the right edge of the current checkpoint: per level the
        last full tile, and the bundles of the last two level-0 tiles. Returns tiles read."""
        cp = self._checkpoint
        if cp is None:
            return 0
        ids = tiles.edge_tiles_for_size(cp.size)
        await asyncio.gather(*(self._verified_tile(t.level, t.index, cp) for t in ids))
        bundles = [t for t in ids if t.level == 0]
        await asyncio.gather(*(self._verified_bundle(t.index, cp) for t in bundles))
        return len(ids) + len(bundles)

    async def mirror_tiles(self, ids: Sequence[TileID]) -> int:
        """Fetch, verify and cache level-0 tiles ``ids`` and their bundles in batch.

        Only the bundles are read from the upstream: each level-0 tile is
        rebuilt from its bundle's leaf hashes (c2sp.org/tlog-tiles: a level-0
        tile is the leaf hashes of its bundle's entries) and checked against
        its verified parent, or against the verified right edge when partial.
        That authenticates both, with half the upstream requests. The batch is
        written to the cache in one transaction only after all of it verified.
        Returns the number of entries mirrored.

        Raises:
            TileError: a bundle does not verify (nothing of the batch is cached).
        """
        return await self.store_mirrored(ids, await self.fetch_mirrored(ids))

    async def fetch_mirrored(self, ids: Sequence[TileID]) -> list[bytes]:
        """The first half of :meth:`mirror_tiles`: the entry bundles, unverified."""
        try:
            bundles = await self._reader.entry_bundles([(t.index, t.width) for t in ids])
        except MalformedError as exc:
            raise TileError(f"upstream bundle: {exc}", where=exc.where) from exc
        self.metrics.upstream_bytes.labels("entries").inc(sum(map(len, bundles)))
        return bundles

    async def store_mirrored(
        self,
        ids: Sequence[TileID],
        bundles: list[bytes],
        *,
        state: Mapping[str, bytes] | None = None,
    ) -> int:
        """The second half of :meth:`mirror_tiles`: verify, then cache in one transaction
        (with ``state``: progress saved with the tiles, see ``FileSystemTileCache.put_many``)."""
        cp = self._checkpoint
        if cp is None or not ids:
            return 0
        try:
            level0 = await asyncio.to_thread(_level0_from_bundles, ids, bundles)
            await self._verify_level0(ids, level0, cp)
        except (TileError, MalformedError) as exc:
            self._refuse("mirror", exc, cp, path=ids[0].entries_path)
        items = [(t, False, d) for t, d in zip(ids, level0, strict=True) if not t.is_partial]
        items += [(t, True, b) for t, b in zip(ids, bundles, strict=True)]
        await asyncio.to_thread(functools.partial(self.cache.put_many, items, state=state))
        return sum(t.width for t in ids)

    async def _verify_level0(
        self, ids: Sequence[TileID], level0: Sequence[bytes], cp: SignedCheckpoint
    ) -> None:
        runs: dict[int, list[int]] = {}
        for k, t in enumerate(ids):
            if t.is_partial:
                if level0[k] != self._edge.get((0, t.index)):
                    raise TileError(
                        f"partial tile 0/{t.index} differs from the verified right edge",
                        level=0,
                        index=t.index,
                    )
            else:
                runs.setdefault(t.index // TILE_WIDTH, []).append(k)
        for parent_index, ks in runs.items():
            parent = tiles.parse_hash_tile(await self._verified_tile(1, parent_index, cp))
            first = ids[ks[0]].index
            lo = first % TILE_WIDTH
            tiles.verify_tiles_against_parents(
                [level0[k] for k in ks], parent[lo : lo + len(ks)], level=0, first_index=first
            )


def _level0_from_bundles(ids: Sequence[TileID], bundles: Sequence[bytes]) -> list[bytes]:
    """The level-0 tile of each bundle: its entries' leaf hashes (one native call each).

    Raises:
        TileError: a bundle holds a number of entries other than its tile's width.
        MalformedError: a bundle does not parse.
    """
    level0 = []
    for t, bundle in zip(ids, bundles, strict=True):
        hashes = tiles.hash_entry_bundle(bundle)
        if len(hashes) != t.width:
            raise TileError(
                f"{t.entries_path}: {len(hashes)} entries, expected {t.width}",
                level=0,
                index=t.index,
            )
        level0.append(hashes.tobytes())
    return level0
