"""Distributed audits of a tile log on Dask (``dask.distributed``, the ``dask`` extra).

The coordinator verifies the signed checkpoint (and its consistency with the
stored one), then cuts the range into tile-aligned chunks, a few per worker
thread (:func:`chunk_tiles_for`). Each Dask task streams its chunk in groups
through its worker process's one event loop and tile reader (kept from task
to task), checks every bundle against its level-0 tile in one native call
per group, and returns only the chunk's compact range and counts:
the hashes of the perfect subtrees covering it (RFC 9162 §2.1.1; the compact
ranges of transparency-dev/merkle). The coordinator merges the chunks in order
with the subtrees left and right of the range (read from hash tiles) and
compares the root with the checkpoint's: the whole tree is proven at once,
chunk boundaries included, not just each chunk.

Entries are staged while the proof is pending: by ``COPY`` from the workers to
PostgreSQL (:meth:`PostgresStore.stage_entries`) and/or to Parquet files. Only
after the root matches are they committed with their verified range, in one
transaction, and Parquet partitions renamed into place. A task that fails or
whose worker dies is retried by Dask; staging is idempotent per chunk, so a
retry never duplicates. A chunk whose bundle does not match its tile is
reported with the tile and the entry index.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from cachetools import LRUCache

from rekorkit import merkle, tiles
from rekorkit.audit.tilelog import RangeError, VerifyReport, _derive_tile, check_consistency
from rekorkit.checkpoint import open_checkpoint
from rekorkit.client.adaptive import ADAPTIVE_CEILING
from rekorkit.client.tilereader import AsyncTileReader
from rekorkit.errors import MalformedError, StoreError, TileError
from rekorkit.note import NoteVerifier
from rekorkit.store import EntryStore, StoredCheckpoint
from rekorkit.store.duckdb import entry_batch
from rekorkit.store.postgres import PostgresStore

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "chunk_spans",
    "chunk_tiles_for",
    "local_cluster",
    "verify_chunk",
    "verify_distributed",
    "verify_on_cluster",
]

TILE_WIDTH = tiles.TILE_WIDTH
HASH = tiles.HASH_SIZE
CHUNKS_PER_WORKER = 3  # evens out a slow worker; few enough that scheduling is noise
MAX_CHUNK_TILES = 1024  # 262,144 entries: what a lost worker's task costs to redo
GROUP_TILES = 32  # level-0 tiles fetched, verified and staged together within a chunk
READ_AHEAD = 2  # groups being fetched while the one before them is verified

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One Dask task: verify leaves ``[start, end)`` (tile-aligned) of a tree of ``size``.

    Attributes:
        url: the log's tile prefix.
        origin: the checkpoint origin (for the staged rows).
        size: the checkpoint size the chunk is verified against.
        start: first leaf, a multiple of 256.
        end: end leaf, a multiple of 256 or ``size``.
        keep: the index ranges whose entries are staged (the ones not stored yet).
        run_id: the audit run, naming its staged rows and files.
        postgres: a ``postgresql://`` URL to stage entries into, or ``None``.
        parquet: a directory to stage Parquet files into, or ``None``.
        concurrency: the most requests in flight on the worker's reader for
            this URL (its adaptive window's ceiling).
        fetch_level0: check each bundle against its served level-0 tile;
            ``False`` hashes the bundles only (half the requests), leaving the
            proof to the merged root.
    """

    url: str
    origin: str
    size: int
    start: int
    end: int
    keep: tuple[tuple[int, int], ...]
    run_id: str
    postgres: str | None = None
    parquet: str | None = None
    concurrency: int = ADAPTIVE_CEILING
    fetch_level0: bool = True


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one chunk established: all a task sends back is this, a few hundred bytes.

    Attributes:
        start, end: the chunk's leaves.
        hashes: its compact range (perfect subtree hashes, left to right).
        entries: entries verified; nbytes: their bytes; staged: entries staged.
        failure: ``None``, or the failed check: ``type``, ``message``, ``evidence``.
    """

    start: int
    end: int
    hashes: tuple[bytes, ...]
    entries: int
    nbytes: int
    staged: int
    failure: dict[str, Any] | None = None


def chunk_spans(start: int, end: int, size: int, chunk_tiles: int) -> list[tuple[int, int]]:
    """Tile-aligned chunks covering ``[start, end)`` (widened to tile edges, capped at ``size``)."""
    if not 0 <= start <= end <= size:
        raise ValueError(f"need 0 <= start <= end <= size, got [{start}, {end}) of {size}")
    if chunk_tiles < 1:
        raise ValueError("chunk_tiles must be >= 1")
    step = chunk_tiles * TILE_WIDTH
    lo = start - start % TILE_WIDTH
    hi = min(size, -(-end // TILE_WIDTH) * TILE_WIDTH)
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def chunk_tiles_for(entries: int, workers: int) -> int:
    """Level-0 tiles per chunk for ``entries`` on ``workers`` worker threads.

    About :data:`CHUNKS_PER_WORKER` chunks per worker: each task costs a
    scheduler round trip and a coordinator merge, so fewer, larger tasks lose
    less; a few per worker still let a fast worker take over a slow one's
    share. Capped at :data:`MAX_CHUNK_TILES`, the work a retry repeats.
    """
    tiles_needed = -(-entries // TILE_WIDTH)
    per_chunk = -(-tiles_needed // (max(workers, 1) * CHUNKS_PER_WORKER))
    return max(1, min(MAX_CHUNK_TILES, per_chunk))


def _subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` covering ``[begin, end)``, left to right."""
    nodes = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


async def _compact_range(reader: AsyncTileReader, size: int, begin: int, end: int) -> Any:
    """The compact range of ``[begin, end)`` read from hash tiles (unverified until merged)."""
    found: list[bytes] = []
    for level, index in _subtrees(begin, end):
        k, r = divmod(level, tiles.TILE_HEIGHT)
        first = index << r
        tile_index, offset = divmod(first, TILE_WIDTH)
        width = min(TILE_WIDTH, (size >> (tiles.TILE_HEIGHT * k)) - tile_index * TILE_WIDTH)
        data = await reader.tile(k, tile_index, width)
        span = data[offset * HASH : (offset + (1 << r)) * HASH]
        if len(span) != (1 << r) * HASH:
            raise TileError(f"tile {k}/{tile_index} is short", level=k, index=tile_index)
        found.append(merkle.root(span))
    return merkle.CompactRange(begin, found, end)


class _Readers(LRUCache[tuple[str, int], AsyncTileReader]):
    """A worker's tile readers by ``(url, concurrency)``; an evicted one is closed."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._closing: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly

    def popitem(self) -> tuple[tuple[str, int], AsyncTileReader]:
        key, reader = super().popitem()
        task = asyncio.get_running_loop().create_task(reader.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return key, reader


class _WorkerIO:
    """One process's event loop, on a daemon thread, and its readers, shared by its tasks.

    Dask runs each task on an executor thread; a loop per task
    (``asyncio.run``) would open a fresh connection pool per task. Here every
    task of the process drives the same loop, so a worker keeps its
    connections to the log alive from one chunk to the next.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._readers = _Readers(maxsize=4)
        threading.Thread(
            target=self.loop.run_forever, name="rekorkit-chunk-io", daemon=True
        ).start()

    def run(self, url: str, concurrency: int, work: Callable[[AsyncTileReader], Awaitable[T]]) -> T:
        """``work(reader)`` on the loop, with this process's reader for ``url``."""

        async def go() -> T:
            key = (url, concurrency)
            reader = self._readers.get(key)
            if reader is None:  # only the loop thread touches the readers
                reader = self._readers[key] = AsyncTileReader(url, max_concurrency=concurrency)
            return await work(reader)

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result()


_WORKER_IO_LOCK = threading.Lock()


@functools.cache
def _worker_io_of(pid: int) -> _WorkerIO:
    return _WorkerIO()


def _worker_io(pid: int) -> _WorkerIO:
    """This process's :class:`_WorkerIO` (keyed by pid: a forked child makes its own).

    Locked: two task threads of a new worker must not start two loops.
    """
    with _WORKER_IO_LOCK:
        return _worker_io_of(pid)


def verify_chunk(task: ChunkTask) -> ChunkResult:
    """Verify one chunk (runs on a Dask worker); see :class:`ChunkTask`."""
    io = _worker_io(os.getpid())
    return io.run(task.url, task.concurrency, lambda reader: _verify_chunk(reader, task))


async def _fetch_group(
    reader: AsyncTileReader, ids: list[tiles.TileID], fetch_level0: bool
) -> tuple[list[bytes], list[bytes]]:
    if not fetch_level0:
        return [], await reader.entry_bundles([(t.index, t.width) for t in ids])
    got_tiles, bundles = await asyncio.gather(
        reader.tiles([(0, t.index, t.width) for t in ids]),
        reader.entry_bundles([(t.index, t.width) for t in ids]),
    )
    return [t[: i.width * HASH] for t, i in zip(got_tiles, ids, strict=True)], bundles


async def _verify_chunk(reader: AsyncTileReader, task: ChunkTask) -> ChunkResult:
    """Stream the chunk in groups: fetch ahead, verify, extend the compact range, stage."""
    ids = tiles.level0_tiles(task.start, task.end, task.size)
    groups = [ids[k : k + GROUP_TILES] for k in range(0, len(ids), GROUP_TILES)]
    compact = merkle.CompactRange(task.start)
    fetches: deque[asyncio.Task[tuple[list[bytes], list[bytes]]]] = deque()
    sink = _Stage(task)
    nbytes = 0
    try:
        for k, group in enumerate(groups):
            for ahead in groups[k + len(fetches) : k + 1 + READ_AHEAD]:
                fetches.append(
                    asyncio.ensure_future(_fetch_group(reader, ahead, task.fetch_level0))
                )
            level0, bundles = await fetches.popleft()
            failure = await asyncio.to_thread(
                _check_group, task, group, level0, bundles, compact, sink
            )
            if failure is not None:
                return ChunkResult(task.start, task.end, (), 0, 0, 0, failure)
            nbytes += sum(len(b) for b in bundles) - 2 * sum(t.width for t in group)
        await asyncio.to_thread(sink.finish)
    finally:
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        await asyncio.to_thread(sink.close)
    return ChunkResult(
        task.start, task.end, tuple(compact.hashes), task.end - task.start, nbytes, sink.staged
    )


def _check_group(
    task: ChunkTask,
    group: list[tiles.TileID],
    level0: list[bytes],
    bundles: list[bytes],
    compact: Any,
    sink: _Stage,
) -> dict[str, Any] | None:
    """Bundles against tiles in one native call (or tiles derived from the bundles),
    then the leaves into the compact range and the entries to the stage; or the
    failed check, with its evidence."""
    try:
        if task.fetch_level0:
            tiles.verify_bundles_against_tiles(bundles, level0, [t.index for t in group])
        else:
            level0 = [_derive_tile(t, b) for t, b in zip(group, bundles, strict=True)]
    except (TileError, MalformedError) as exc:
        evidence = dict(getattr(exc, "evidence", {}) or {})
        if evidence.get("index") is not None and evidence.get("position") is not None:
            evidence["entry_index"] = int(evidence["index"]) * TILE_WIDTH + int(
                evidence["position"]
            )
        evidence["chunk"] = [task.start, task.end]
        return {"type": type(exc).__name__, "message": str(exc), "evidence": evidence}
    leaves = np.frombuffer(b"".join(level0), np.uint8).reshape(-1, HASH)
    compact.extend(leaves)
    if task.postgres or task.parquet:
        first = group[0].index * TILE_WIDTH
        sink.add(_entries_table(task, first, bundles, leaves))
    return None


class _Stage:
    """Where a chunk's entries wait for the proof: PostgreSQL staging rows and/or one
    Parquet file, written group by group so memory stays bounded by a group.

    Both are idempotent per chunk: staged rows of the run in a group's index
    range are replaced, and the Parquet file appears under its chunk's name
    only when complete (temp, fsync, rename), so a retried task never duplicates.
    """

    def __init__(self, task: ChunkTask) -> None:
        self.staged = 0
        self._task = task
        self._store: PostgresStore | None = None
        self._writer: pq.ParquetWriter | None = None
        self._path = (
            Path(task.parquet) / f"part-{task.start:015d}.parquet" if task.parquet else None
        )
        self._tmp = (
            self._path.with_name(f".{self._path.name}.{uuid.uuid4().hex}.tmp")
            if self._path
            else None
        )

    def add(self, table: pa.Table) -> None:
        self.staged += table.num_rows
        if self._task.postgres and table.num_rows:
            if self._store is None:
                self._store = PostgresStore(self._task.postgres)
            self._store.stage_entries(self._task.run_id, table)
        if self._tmp is not None:
            if self._writer is None:
                self._tmp.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            self._writer.write_table(table)

    def finish(self) -> None:
        """Put the Parquet file in place (the PostgreSQL rows are already staged)."""
        if self._writer is None or self._path is None or self._tmp is None:
            return
        self._writer.close()
        self._writer = None
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self._path)

    def close(self) -> None:
        """Release the connection; drop a Parquet file left unfinished."""
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _entries_table(
    task: ChunkTask, first: int, bundles: list[bytes], leaves: np.ndarray
) -> pa.Table:
    """The group's entries from ``first`` that ``task.keep`` asks for, as an Arrow table."""
    n = len(leaves)
    data, offsets = tiles.entry_columns(bundles, 0, n)
    bodies = pa.BinaryArray.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    batch = entry_batch(task.origin, first, bodies, leaves, checkpoint_size=task.size)
    idx = np.arange(first, first + n)
    mask = np.zeros(n, bool)
    for a, b in task.keep:
        mask |= (idx >= a) & (idx < b)
    return pa.Table.from_batches([batch]).filter(pa.array(mask))


async def verify_distributed(
    url: str,
    verifier: NoteVerifier,
    client: Any,
    *,
    store: EntryStore | None = None,
    parquet: str | Path | None = None,
    start: int | None = None,
    end: int | None = None,
    origin: str | None = None,
    chunk_tiles: int | None = None,
    concurrency: int = ADAPTIVE_CEILING,
    fetch_level0: bool = True,
    retries: int = 3,
    progress: Callable[[int, int], None] | None = None,
    on_plan: Callable[[int, int, int], None] | None = None,
) -> VerifyReport:
    """Verify ``[start, end)`` of a tile log on a Dask cluster; results equal
    :func:`~rekorkit.audit.verify_tile_log`'s.

    Args:
        url: the log's tile prefix (every worker must reach it).
        verifier: the log's checkpoint key.
        client: a ``dask.distributed.Client``.
        store: where verified entries go (PostgreSQL: staged by COPY from the
            workers; another store such as DuckDB: staged as Parquet on the
            coordinator's disk, local clusters only), or ``None``.
        parquet: also write the verified entries as Parquet partitions here.
        start, end, origin: as for ``verify_tile_log``.
        chunk_tiles: level-0 tiles per task (default: :func:`chunk_tiles_for` the
            range and the cluster's worker threads).
        concurrency: the most requests in flight per worker process (its one
            reader's adaptive window adapts to the link below it).
        fetch_level0: read each bundle's level-0 tile too (default), as for
            ``verify_tile_log``. ``False`` halves the requests: the merged
            root still proves every entry, and only if it misses are the
            chunks checked against their served tiles, to name the entry.
        retries: Dask retries of a task that raised or lost its worker.
        progress, on_plan: as for ``verify_tile_log``.

    Raises:
        TileError: a chunk's bundle does not match its tile (evidence: tile,
            entry index, chunk), or the chunks do not hash up to the signed root.
        DivergenceError, SignatureError, RangeError, RekorAPIError, StoreError.
    """
    t0 = time.perf_counter()
    async with AsyncTileReader(url, max_concurrency=concurrency) as reader:
        signed = open_checkpoint(await reader.checkpoint(), verifier, origin=origin)
        size = signed.size
        lo = (
            start
            if start is not None
            else (store.last_verified_size(signed.origin) if store else 0)
        )
        hi = end if end is not None else size
        if start is None and lo > hi:
            lo = hi
        if not 0 <= lo <= hi <= size:
            raise RangeError(f"range [{lo}, {hi}) does not fit the log's checkpoint size {size}")
        old = store.latest_checkpoint(signed.origin) if store else None
        proof = None
        if old is not None and 0 < old.size < size:
            proof = await tiles.AsyncProofBuilder(size, reader.read_tile).consistency_proof(
                old.size
            )
        previous = check_consistency(store, signed, proof)
        gaps = store.missing_ranges(signed.origin, lo, hi) if store else [(lo, hi)]
        gaps = [(a, b) for a, b in gaps if a < b]
        if chunk_tiles is None:
            threads = sum((await asyncio.to_thread(client.nthreads)).values())
            chunk_tiles = chunk_tiles_for(gaps[-1][1] - gaps[0][0] if gaps else 0, threads)
        spans = chunk_spans(gaps[0][0], gaps[-1][1], size, chunk_tiles) if gaps else []
        left = await _compact_range(reader, size, 0, spans[0][0] if spans else size)
        right = await _compact_range(reader, size, spans[-1][1], size) if spans else None
    if on_plan is not None:
        on_plan(lo, hi, sum(b - a for a, b in gaps))

    run_id = uuid.uuid4().hex
    pg = store.url if isinstance(store, PostgresStore) else None
    staging_root = Path(tempfile.mkdtemp(prefix="rekorkit-stage-")) if spans else None
    local_store = store is not None and not isinstance(store, PostgresStore)
    wants_files = local_store or parquet is not None
    parts = staging_root / "parts" if staging_root is not None and wants_files else None
    try:
        tasks = [
            ChunkTask(url, signed.origin, size, a, b, tuple(gaps), run_id, pg,
                      str(parts) if parts else None, concurrency, fetch_level0)
            for a, b in spans
        ]  # fmt: skip
        results = await asyncio.to_thread(_run_tasks, client, tasks, retries, progress)
        _raise_failure(results)
        merged = left
        for r in results:
            merged.merge(merkle.CompactRange(r.start, list(r.hashes), r.end))
        if right is not None:
            merged.merge(right)
        computed = merged.root()
        if computed != signed.root and not fetch_level0:
            # Name the entry: the chunks again, each bundle against its served tile.
            checks = [replace(t, postgres=None, parquet=None, fetch_level0=True) for t in tasks]
            _raise_failure(await asyncio.to_thread(_run_tasks, client, checks, retries, None))
        if computed != signed.root:
            raise TileError(
                f"{signed.origin}: the chunks hash to {computed.hex()}, not the checkpoint "
                f"root {signed.root.hex()}",
                expected=signed.root,
                actual=computed,
                chunks=[[r.start, r.end] for r in results],
            )
        stored_cp = StoredCheckpoint(signed.origin, size, signed.root, signed.raw)
        stored = await asyncio.to_thread(_finalize, store, run_id, stored_cp, gaps, parts, parquet)
    except BaseException:
        if isinstance(store, PostgresStore) and spans:
            # The original error says more than a failed cleanup would.
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(store.drop_staged, run_id)
        raise
    finally:
        if staging_root is not None:
            shutil.rmtree(staging_root, ignore_errors=True)
    return VerifyReport(
        url=url,
        api="v2",
        origin=signed.origin,
        start=lo,
        end=hi,
        entries=sum(b - a for a, b in gaps),
        nbytes=sum(r.nbytes for r in results) if spans else 0,
        checkpoint_size=size,
        root_hash=signed.root,
        checkpoint=signed.raw,
        previous_size=previous.size if previous else None,
        stored=stored,
        seconds=time.perf_counter() - t0,
    )


def _raise_failure(results: list[ChunkResult]) -> None:
    """Raise the first failed chunk's check as a :class:`TileError` with its evidence."""
    for r in results:
        if r.failure is not None:
            raise TileError(
                f"chunk [{r.start}, {r.end}): {r.failure['message']}", **r.failure["evidence"]
            )


def _run_tasks(
    client: Any,
    tasks: list[ChunkTask],
    retries: int,
    progress: Callable[[int, int], None] | None,
) -> list[ChunkResult]:
    from distributed import as_completed

    futures = client.map(verify_chunk, tasks, pure=False, retries=retries)
    results: list[ChunkResult] = []
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            result: ChunkResult = future.result()
            results.append(result)
            if progress is not None:
                progress(result.entries, result.nbytes)
    finally:
        client.cancel(futures)
    return sorted(results, key=lambda r: r.start)


def _finalize(
    store: EntryStore | None,
    run_id: str,
    checkpoint: StoredCheckpoint,
    gaps: list[tuple[int, int]],
    parts: Path | None,
    parquet: str | Path | None,
) -> int:
    """Commit what the proven chunks staged; return the entries stored."""
    stored = 0
    if isinstance(store, PostgresStore):
        stored = store.commit_staged(checkpoint.origin, run_id, ranges=gaps, checkpoint=checkpoint)
    elif store is not None:
        files = sorted(parts.glob("part-*.parquet")) if parts else []
        table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
        for a, b in gaps:
            part = (
                table.filter(pc.and_(pc.greater_equal(table["log_index"], a),
                                     pc.less(table["log_index"], b)))
                if table is not None
                else pa.table({})
            )  # fmt: skip
            stored += store.commit_entries(
                checkpoint.origin, [part], start=a, end=b, checkpoint=checkpoint
            )
        if not gaps:
            store.add_checkpoint(checkpoint)
    if parquet is not None and parts is not None:
        dest = Path(parquet) / f"origin={_partition_name(checkpoint.origin)}"
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted(parts.glob("part-*.parquet")):
            shutil.move(str(f), dest / f.name)
        manifest = {
            "origin": checkpoint.origin,
            "checkpoint_size": checkpoint.size,
            "root_hash": checkpoint.root_hash.hex(),
            "checkpoint": checkpoint.note.decode("utf-8", "replace"),
            "ranges": gaps,
        }
        tmp = dest / f".manifest.{run_id}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, dest / f"_checkpoint-{checkpoint.size}.json")
    return stored


def _partition_name(origin: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in origin)


def local_cluster(workers: int = 2) -> Any:
    """A Dask ``LocalCluster`` for audits: ``workers`` processes of one thread each.

    One thread per process: the verification is native and the I/O is one
    event loop, so a second thread would only contend for the GIL. The
    workers start without the ``MALLOC_TRIM_THRESHOLD_`` Dask's nanny
    exports by default: setting it turns off glibc's adaptive mmap
    threshold, so every buffer over 128 KiB (each entry bundle, about
    165 KB at 700-byte entries) is mapped and unmapped again, which cost
    the audit about half as much CPU again per entry in our measurements.
    An audit's memory is bounded by its read-ahead, so trimming buys nothing.
    Use it as a context manager; the caller connects a ``Client``.
    """
    import dask.config
    from distributed import LocalCluster

    untrimmed = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(untrimmed):
        # Loopback only, and ephemeral ports: the dashboard's default (:8787, every
        # interface) is taken as soon as two clusters run on one machine.
        return LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )


async def verify_on_cluster(
    url: str,
    verifier: NoteVerifier,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> VerifyReport:
    """:func:`verify_distributed` on the scheduler at ``scheduler`` (``tcp://HOST:8786``), or
    on a :func:`local_cluster` of ``workers`` processes started and stopped here.

    ``options`` are passed to :func:`verify_distributed`.
    """
    from distributed import Client

    if scheduler:
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            return await verify_distributed(url, verifier, client, **options)
    with (
        local_cluster(workers or 1) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        return await verify_distributed(url, verifier, client, **options)
