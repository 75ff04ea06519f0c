"""Bulk verification of a tile log range (Rekor v2, any C2SP tlog-tiles log).

The engine, for one run:

1. fetches the checkpoint and verifies its signature;
2. checks it is consistent with the last checkpoint stored for the origin,
   with a proof built from tiles (a smaller size or another root is a fork
   or rollback: :class:`~rekorkit.errors.DivergenceError`);
3. recomputes the root from the rightmost tiles and compares it with the
   checkpoint, which authenticates those tiles (c2sp.org/tlog-tiles, "Trust");
4. streams the level-0 tiles and entry bundles of the range in groups (each
   group's reads in flight within a window adapted to the link, the next
   groups read while one is verified); each group of bundles is hashed and compared with its tiles
   in one native call, each full tile is hashed and compared with its hash in
   the parent tile (parents are checked the same way up to the authenticated
   edge);
5. stores the verified entries in order, committing whole DuckDB row groups,
   so the store never holds an entry past the last verified one.

Memory is bounded by the fetch window (about ``4 x concurrency`` tiles and
bundles being read, as many read and awaiting verification, the concurrency
fixed or adapted to the link up to a ceiling) plus one row group of entries
awaiting commit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from rekorkit import merkle, tiles
from rekorkit.audit.committer import OrderedCommitter
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint
from rekorkit.client.adaptive import WindowGate
from rekorkit.client.tilereader import AsyncTileReader
from rekorkit.errors import (
    ConsistencyError,
    DivergenceError,
    MalformedError,
    RangeError,
    TileError,
    VerificationError,
)
from rekorkit.note import NoteVerifier
from rekorkit.store import EntryStore, StoredCheckpoint
from rekorkit.store.duckdb import ROW_GROUP_ROWS, entry_batch

__all__ = ["ProgressCallback", "RangeError", "VerifyReport", "verify_tile_log"]

TILE_WIDTH = tiles.TILE_WIDTH
HASH = tiles.HASH_SIZE

ProgressCallback = Callable[[int, int], None]
"""``progress(entries, nbytes)``: called with increments as groups verify."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a verification run established.

    Attributes:
        url: the log's URL.
        api: ``"v2"`` (tiles) or ``"v1"``.
        origin: the checkpoint origin.
        start: first index of the requested range.
        end: end (exclusive) of the requested range.
        entries: entries verified in this run (already stored ones are skipped).
        nbytes: bytes of entry data verified.
        checkpoint_size: the size of the checkpoint verified against.
        root_hash: its root.
        checkpoint: the signed checkpoint note.
        previous_size: the stored checkpoint the new one was proved consistent with.
        stored: entries written to the store.
        seconds: wall time of the run.
        shards: per-shard reports (Rekor v1 logs with inactive shards).
    """

    url: str
    api: str
    origin: str
    start: int
    end: int
    entries: int
    nbytes: int
    checkpoint_size: int
    root_hash: bytes
    checkpoint: bytes
    previous_size: int | None
    stored: int
    seconds: float
    shards: tuple[VerifyReport, ...] = field(default=())

    @property
    def entries_per_second(self) -> float:
        """Throughput in entries per second."""
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        """Throughput in MB (10^6 bytes) of entry data per second."""
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the report."""
        return {
            "url": self.url,
            "api": self.api,
            "origin": self.origin,
            "range": [self.start, self.end],
            "entries": self.entries,
            "bytes": self.nbytes,
            "checkpoint_size": self.checkpoint_size,
            "root_hash": self.root_hash.hex(),
            "checkpoint": self.checkpoint.decode("utf-8", "replace"),
            "previous_size": self.previous_size,
            "stored": self.stored,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries_per_second, 1),
            "mb_per_second": round(self.mb_per_second, 2),
            "shards": [s.to_json() for s in self.shards],
        }


def check_consistency(
    store: EntryStore | None, signed: SignedCheckpoint, proof: list[bytes] | None
) -> StoredCheckpoint | None:
    """Compare ``signed`` with the latest stored checkpoint of its origin.

    ``proof`` is the consistency proof from the stored size (``None`` when
    none is needed). Returns the stored checkpoint it was compared with.

    Raises:
        DivergenceError: rollback, a different root at the same size, or a
            proof that does not verify; evidence holds both checkpoints.
    """
    if store is None:
        return None
    old = store.latest_checkpoint(signed.origin)
    if old is None:
        return None
    evidence = {
        "old": old.note.decode("utf-8", "replace"),
        "new": signed.raw.decode("utf-8", "replace"),
        "old_size": old.size,
        "new_size": signed.size,
        "old_root": old.root_hash.hex(),
        "new_root": signed.root.hex(),
    }
    if signed.size < old.size:
        raise DivergenceError(
            f"{signed.origin}: checkpoint size {signed.size} is smaller than the stored "
            f"{old.size} (rollback)",
            **evidence,
        )
    if signed.size == old.size:
        if signed.root != old.root_hash:
            raise DivergenceError(
                f"{signed.origin}: two different roots for tree size {old.size} (fork)", **evidence
            )
        return old
    if old.size == 0:
        # Every tree extends the empty one (RFC 9162 §2.1.4 defines no proof from size 0);
        # only its root, the hash of nothing (§2.1.1), can be wrong.
        if old.root_hash != merkle.EMPTY_ROOT:
            raise DivergenceError(
                f"{signed.origin}: the stored size-0 checkpoint has root {old.root_hash.hex()}, "
                "not the empty tree's",
                **evidence,
            )
        return old
    try:
        merkle.verify_consistency(old.size, signed.size, old.root_hash, signed.root, proof or [])
    except ConsistencyError as exc:
        raise DivergenceError(
            f"{signed.origin}: checkpoint {signed.size} is not consistent with the stored "
            f"checkpoint {old.size} (fork or rewritten history): {exc}",
            **evidence,
        ) from exc
    return old


class _Authenticated:
    """Tiles at level >= 1 (and the right edge) known to hash up to the signed root."""

    def __init__(self, reader: AsyncTileReader, size: int, edge: dict[tuple[int, int], bytes]):
        self.reader = reader
        self._reader = reader
        self._size = size
        self._edge = edge
        self._tiles: dict[tuple[int, int], bytes] = dict(edge)
        self._lock = asyncio.Lock()

    def edge(self, level: int, index: int) -> bytes | None:
        return self._edge.get((level, index))

    async def parent_hash(self, level: int, index: int) -> bytes:
        """The hash of full tile ``(level, index)`` in its (authenticated) parent tile."""
        parent = await self._tile(level + 1, index // TILE_WIDTH)
        pos = (index % TILE_WIDTH) * HASH
        if pos + HASH > len(parent):
            raise TileError(
                f"tile {level + 1}/{index // TILE_WIDTH} has no hash for full tile {level}/{index}",
                level=level + 1,
                index=index // TILE_WIDTH,
                position=index % TILE_WIDTH,
            )
        return parent[pos : pos + HASH]

    async def _tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        found = self._tiles.get(key)
        if found is not None:
            return found
        async with self._lock:
            found = self._tiles.get(key)
            if found is not None:
                return found
            # Not on the right edge, so full: it must hash to its parent's entry.
            data = await _fetch_tile(self._reader, level, index, TILE_WIDTH)
            want = await self._parent_hash_unlocked(level, index)
            tiles.verify_tile_against_parent(data, want, level=level, index=index)
            self._tiles[key] = data
            return data

    async def _parent_hash_unlocked(self, level: int, index: int) -> bytes:
        key = (level + 1, index // TILE_WIDTH)
        parent = self._tiles.get(key)
        if parent is None:
            data = await _fetch_tile(self._reader, key[0], key[1], TILE_WIDTH)
            want = await self._parent_hash_unlocked(key[0], key[1])
            tiles.verify_tile_against_parent(data, want, level=key[0], index=key[1])
            self._tiles[key] = parent = data
        pos = (index % TILE_WIDTH) * HASH
        return parent[pos : pos + HASH]

    def forget_below(self, level1_index: int) -> None:
        """Drop level-1 tiles left of ``level1_index`` (the stream has passed them)."""
        stale = [
            k for k in self._tiles if k[0] == 1 and k[1] < level1_index and k not in self._edge
        ]
        for k in stale:
            del self._tiles[k]


def _tile_fetch_error(exc: Exception, level: int, index: int) -> Exception:
    """A tile that arrived but does not parse is a verification failure, named."""
    if isinstance(exc, MalformedError):
        error = TileError(f"tile {level}/{index}: {exc}", level=level, index=index, where=exc.where)
        error.__cause__ = exc
        return error
    return exc


def _bundle_fetch_error(exc: Exception, tid: tiles.TileID) -> Exception:
    if isinstance(exc, MalformedError):
        error = TileError(
            f"entry bundle {tid.index}: {exc}",
            level=0,
            index=tid.index,
            entry_index=tid.index * TILE_WIDTH,
            where=exc.where,
        )
        error.__cause__ = exc
        return error
    return exc


async def _fetch_tile(reader: AsyncTileReader, level: int, index: int, width: int) -> bytes:
    try:
        return await reader.tile(level, index, width)
    except MalformedError as exc:
        raise _tile_fetch_error(exc, level, index) from exc


Group = list[tuple[tiles.TileID, bytes, bytes]]


async def _gated(gate: WindowGate, reads: list[Any]) -> list[Any]:
    """Each read through the gate; a failed read gives its exception in its place."""
    runs = (gate.run(fn, *args) for fn, *args in reads)
    out = await asyncio.gather(*runs, return_exceptions=True)
    for item in out:
        if isinstance(item, BaseException) and not isinstance(item, Exception):
            raise item
    return out


async def _fetch_group(
    reader: AsyncTileReader,
    auth: _Authenticated,
    ids: list[tiles.TileID],
    fetch_level0: bool,
    gate: WindowGate,
) -> tuple[Group, Exception | None]:
    """The tiles and bundles of ``ids``, each read through ``gate``.

    Returns the pairs that arrived in order up to the first failed read, and
    that read's error: what came before it is still verified and stored.
    A tile given as ``b""`` is to be derived from its bundle (still checked
    against its parent).
    """
    wanted = [t for t in ids if fetch_level0 and auth.edge(0, t.index) is None]
    got = await _gated(
        gate,
        [(reader.tile, 0, t.index, t.width) for t in wanted]
        + [(reader.entry_bundle, t.index, t.width) for t in ids],
    )
    got_tiles, got_bundles = got[: len(wanted)], got[len(wanted) :]
    fetched = {t.index: d for t, d in zip(wanted, got_tiles, strict=True)}
    group: Group = []
    for tid, bundle in zip(ids, got_bundles, strict=True):
        tile = auth.edge(0, tid.index) or fetched.get(tid.index, b"")
        if isinstance(tile, Exception):
            return group, _tile_fetch_error(tile, 0, tid.index)
        if isinstance(bundle, Exception):
            return group, _bundle_fetch_error(bundle, tid)
        group.append((tid, tile, bundle))
    return group, None


def _derive_tile(tid: tiles.TileID, bundle: bytes) -> bytes:
    """The level-0 tile a bundle hashes to (one native call)."""
    try:
        hashes = tiles.hash_entry_bundle(bundle)
    except MalformedError as exc:
        raise TileError(
            f"entry bundle {tid.index} does not parse: {exc}",
            level=0,
            index=tid.index,
            where=exc.where,
        ) from exc
    if len(hashes) != tid.width:
        raise TileError(
            f"entry bundle {tid.index} holds {len(hashes)} entries, expected {tid.width}",
            level=0,
            index=tid.index,
        )
    return bytes(hashes.tobytes())


def _verify_group(group: Group, parent_hashes: list[bytes | None]) -> Group:
    """Bundles against tiles in one native call; full tiles against their parent hashes.

    Tiles given as ``b""`` are derived from their bundles. Returns the group
    with every tile filled in.
    """
    filled = [(tid, tile or _derive_tile(tid, bundle), bundle) for tid, tile, bundle in group]
    served = [g for g, (_, tile, _) in zip(filled, group, strict=True) if tile]
    try:
        if served:
            tiles.verify_bundles_against_tiles(
                [b for _, _, b in served],
                [t for _, t, _ in served],
                [t.index for t, _, _ in served],
            )
    except TileError as exc:
        ev = exc.evidence
        if ev.get("index") is not None and ev.get("position") is not None:
            ev.setdefault("entry_index", int(ev["index"]) * TILE_WIDTH + int(ev["position"]))
        raise
    except MalformedError as exc:
        raise TileError(f"entry bundle does not parse: {exc}", where=exc.where) from exc
    for (tid, tile, _), want in zip(filled, parent_hashes, strict=True):
        if want is not None:
            tiles.verify_tile_against_parent(tile, want, level=0, index=tid.index)
    return filled


def _group_batch(
    origin: str,
    size: int,
    group: list[tuple[tiles.TileID, bytes, bytes]],
    lo: int,
    hi: int,
) -> tuple[pa.RecordBatch, int]:
    """The verified entries of ``group`` within ``[lo, hi)`` as one Arrow batch, and their bytes."""
    base = group[0][0].index * TILE_WIDTH
    first = max(lo, base)
    last = min(hi, group[-1][0].index * TILE_WIDTH + group[-1][0].width)
    # One native pass: the bodies without their length prefixes, and offsets.
    data, offsets = tiles.entry_columns([b for _, _, b in group], first - base, last - first)
    arr = pa.BinaryArray.from_buffers(
        pa.binary(), last - first, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    leaf = np.frombuffer(b"".join(tile for _, tile, _ in group), np.uint8).reshape(-1, HASH)
    leaf = leaf[first - base : last - base]
    return entry_batch(origin, first, arr, leaf, checkpoint_size=size), len(data)


def _group_bytes(group: list[tuple[tiles.TileID, bytes, bytes]], lo: int, hi: int) -> int:
    """Entry bytes verified in ``group`` (bundle bytes minus length prefixes), for reporting."""
    total = 0
    for tid, _, bundle in group:
        base = tid.index * TILE_WIDTH
        n = min(hi, base + tid.width) - max(lo, base)
        total += len(bundle) * n // max(tid.width, 1) - 2 * n
    return max(total, 0)


async def verify_tile_log(
    reader: AsyncTileReader,
    verifier: NoteVerifier,
    *,
    store: EntryStore | None = None,
    start: int | None = None,
    end: int | None = None,
    origin: str | None = None,
    concurrency: int | None = None,
    group_size: int = 32,
    url: str = "",
    progress: ProgressCallback | None = None,
    on_plan: Callable[[int, int, int], None] | None = None,
    fetch_level0: bool = True,
) -> VerifyReport:
    """Verify entries ``[start, end)`` of a tile log against its signed checkpoint.

    Args:
        reader: the log's tile reader (it retries network faults by its policy).
        verifier: the log's checkpoint key.
        store: where verified entries and checkpoints go (``None``: verify only).
        start: first index (default: where the store left off, else 0).
        end: end index, exclusive (default: the checkpoint size).
        origin: the expected checkpoint origin (default: from the key name).
        concurrency: requests in flight, fixed; ``None`` (default) reads
            through the reader's gate (``AsyncTileReader.gate``: by default an
            :class:`~rekorkit.client.adaptive.AdaptiveWindow` that grows while
            throughput grows, backs off on queueing, 429/503, errors and slow
            connects, up to the reader's ``max_concurrency``). Groups are read
            ahead to keep about twice that many tiles and bundles coming.
        group_size: bundles read as one batch and hashed per native call.
        url: the log URL, for the report.
        progress: called as ``progress(entries, nbytes)`` after each group.
        on_plan: called once as ``on_plan(start, end, entries_to_verify)``.
        fetch_level0: fetch each full level-0 tile and compare the bundle with it
            (default). ``False`` derives the tile from the bundle instead (half
            the requests); every entry still hashes up to its parent tile and
            the signed root, and a mismatch fetches the served tile to name the entry.

    Returns:
        the report.

    Raises:
        SignatureError, CheckpointError: the checkpoint does not verify.
        DivergenceError: the checkpoint contradicts the stored one.
        TileError: a tile or bundle does not hash up to the checkpoint
            (evidence: level, index, entry_index, expected, actual).
        RangeError: the range does not fit the checkpoint.
        RekorAPIError: the log could not be read (after retries).
    """
    t0 = time.perf_counter()
    signed = open_checkpoint(await reader.checkpoint(), verifier, origin=origin)
    lo, hi = _plan_range(store, signed, start, end)
    previous = await _prove_consistent(reader, store, signed)
    edge = await _authenticate_edge(reader, signed)
    stored_cp = StoredCheckpoint(signed.origin, signed.size, signed.root, signed.raw)
    if store is not None:
        await asyncio.to_thread(store.add_checkpoint, stored_cp)

    gaps = store.missing_ranges(signed.origin, lo, hi) if store else ([(lo, hi)] if lo < hi else [])
    if on_plan is not None:
        on_plan(lo, hi, sum(b - a for a, b in gaps))
    auth = _Authenticated(reader, signed.size, edge)
    committer = OrderedCommitter(
        store, commit_rows=ROW_GROUP_ROWS, aligned=True, checkpoint=stored_cp
    )
    gate = reader.gate if concurrency is None else WindowGate(concurrency)
    verified = verified_bytes = 0
    for a, b in gaps:
        n, nbytes = await _stream_gap(
            auth, committer, signed, a, b, group_size, gate, fetch_level0, progress
        )
        verified += n
        verified_bytes += nbytes
    size, root = signed.size, signed.root

    return VerifyReport(
        url=url,
        api="v2",
        origin=signed.origin,
        start=lo,
        end=hi,
        entries=verified,
        nbytes=verified_bytes,
        checkpoint_size=size,
        root_hash=root,
        checkpoint=signed.raw,
        previous_size=previous.size if previous else None,
        stored=committer.stored,
        seconds=time.perf_counter() - t0,
    )


def _plan_range(
    store: EntryStore | None, signed: SignedCheckpoint, start: int | None, end: int | None
) -> tuple[int, int]:
    """The range to verify: the caller's, or from where the store left off to the checkpoint."""
    size = signed.size
    lo = start if start is not None else (store.last_verified_size(signed.origin) if store else 0)
    hi = end if end is not None else size
    if start is None and lo > hi:
        lo = hi
    if not 0 <= lo <= hi <= size:
        raise RangeError(f"range [{lo}, {hi}) does not fit the log's checkpoint size {size}")
    return lo, hi


async def _prove_consistent(
    reader: AsyncTileReader, store: EntryStore | None, signed: SignedCheckpoint
) -> StoredCheckpoint | None:
    """Prove the checkpoint consistent with the stored one, from tiles; the stored one back."""
    old = store.latest_checkpoint(signed.origin) if store else None
    proof = None
    if old is not None and 0 < old.size < signed.size:
        builder = tiles.AsyncProofBuilder(signed.size, reader.read_tile)
        try:
            proof = await builder.consistency_proof(old.size)
        except MalformedError as exc:
            raise TileError(f"tiles for the consistency proof do not parse: {exc}") from exc
    return check_consistency(store, signed, proof)


async def _authenticate_edge(
    reader: AsyncTileReader, signed: SignedCheckpoint
) -> dict[tuple[int, int], bytes]:
    """The rightmost tiles, authenticated by hashing them to the signed root.

    The root computed from the right edge of a tree must equal the checkpoint
    root (c2sp.org/tlog-tiles); a match authenticates those tiles.
    """
    size, root = signed.size, signed.root
    edge_ids = tiles.tiles_for_size(size)
    edge_data = await asyncio.gather(
        *(_fetch_tile(reader, t.level, t.index, t.width) for t in edge_ids)
    )
    edge = {
        (t.level, t.index): d[: t.width * HASH] for t, d in zip(edge_ids, edge_data, strict=True)
    }
    computed = tiles.root_from_tiles(size, lambda level, index, width: edge[(level, index)])
    if computed != root:
        raise TileError(
            f"{signed.origin}: the rightmost tiles hash to {computed.hex()}, "
            f"not the checkpoint root {root.hex()}",
            level=None,
            index=None,
            expected=root,
            actual=computed,
            tiles=[t.path for t in edge_ids],
        )
    return edge


async def _stream_gap(
    auth: _Authenticated,
    committer: OrderedCommitter,
    signed: SignedCheckpoint,
    a: int,
    b: int,
    group_size: int,
    gate: WindowGate,
    fetch_level0: bool,
    progress: ProgressCallback | None,
) -> tuple[int, int]:
    """Verify and store entries ``[a, b)``, groups read ahead while one is verified."""
    ids = tiles.level0_tiles(a, b, signed.size)
    chunks = [ids[k : k + group_size] for k in range(0, len(ids), group_size)]
    inflight: deque[asyncio.Task[tuple[Group, Exception | None]]] = deque()
    pos = reading = verified = verified_bytes = 0
    stopped = False

    def fill() -> None:
        # Enough groups being read to keep the gate's window of requests busy
        # as it moves (its reach: what it may grow to by the end of its round,
        # so requests to fill a grown window are already waiting), topped up
        # as each read finishes, not only between verifications: a
        # verification waiting on a parent tile must not drain the link.
        # Read-but-unverified groups are bounded too.
        nonlocal pos, reading
        window = max(2, -(-2 * gate.reach // group_size))
        while not stopped and pos < len(chunks) and reading < window and len(inflight) < 2 * window:
            task = asyncio.ensure_future(
                _fetch_group(auth.reader, auth, chunks[pos], fetch_level0, gate)
            )
            task.add_done_callback(fetched)
            inflight.append(task)
            pos += 1
            reading += 1

    def fetched(_: asyncio.Task[tuple[Group, Exception | None]]) -> None:
        nonlocal reading
        reading -= 1
        fill()

    try:
        while pos < len(chunks) or inflight:
            fill()
            group, fetch_error = await inflight.popleft()
            if group:
                n, nbytes = await _process(auth, committer, signed.origin, signed.size, group, a, b)
                verified += n
                verified_bytes += nbytes
                if progress is not None:
                    progress(n, nbytes)
            if fetch_error is not None:  # what arrived before it is verified and kept
                raise fetch_error
    except BaseException:
        stopped = True
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        await committer.close()
        raise
    await committer.close()
    return verified, verified_bytes


async def _pinpoint(
    auth: _Authenticated, tid: tiles.TileID, bundle: bytes, exc: TileError
) -> TileError:
    """For a derived tile that missed its parent: fetch the served tile to name the entry."""
    try:
        served = await _fetch_tile(auth.reader, 0, tid.index, tid.width)
        tiles.verify_bundle_against_tile(bundle, served, tile_index=tid.index)
    except TileError as found:
        ev = found.evidence
        if ev.get("position") is not None:
            ev.setdefault("entry_index", tid.index * TILE_WIDTH + int(ev["position"]))
            return found
    except Exception:  # the served tile is no help; report the parent mismatch
        return exc
    return exc


async def _process(
    auth: _Authenticated,
    committer: OrderedCommitter,
    origin: str,
    size: int,
    group: list[tuple[tiles.TileID, bytes, bytes]],
    lo: int,
    hi: int,
) -> tuple[int, int]:
    """Verify one group; store what verified. On failure, store the verified prefix and raise."""
    parents: list[bytes | None] = []
    failure: BaseException | None = None
    for tid, _, _ in group:
        if tid.width == TILE_WIDTH and auth.edge(0, tid.index) is None:
            try:
                parents.append(await auth.parent_hash(0, tid.index))
            except (VerificationError, MalformedError) as exc:
                failure = exc
                break
        else:
            parents.append(None)
    good = group[: len(parents)]
    try:
        if good:
            good = await asyncio.to_thread(_verify_group, good, parents)
    except TileError as exc:
        failure = exc
        bad = exc.evidence.get("index")
        cut = next((i for i, (tid, _, _) in enumerate(good) if tid.index == bad), 0)
        if cut < len(good) and not good[cut][1] and exc.evidence.get("position") is None:
            failure = await _pinpoint(auth, good[cut][0], good[cut][2], exc)
        good = good[:cut]
        if good:  # the bundles before the failing one verified in the same call
            good = await asyncio.to_thread(_verify_group, good, parents[:cut])
    n = nbytes = 0
    if good:
        first = max(lo, good[0][0].index * TILE_WIDTH)
        last = min(hi, good[-1][0].index * TILE_WIDTH + good[-1][0].width)
        n = last - first
        if committer.store is not None:
            batch, nbytes = await asyncio.to_thread(_group_batch, origin, size, good, lo, hi)
            await committer.add(origin, first, batch)
        else:
            nbytes = _group_bytes(good, lo, hi)
        auth.forget_below(good[0][0].index // TILE_WIDTH)
    if failure is not None:
        raise failure
    return n, nbytes
