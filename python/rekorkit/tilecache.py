"""A filesystem cache of C2SP tlog-tiles hash tiles and entry bundles.

Blobs are content-addressed (named by their SHA-256) under ``blobs/``; a
SQLite index (WAL mode, one write transaction per change) maps each tile to
its widest known version, so a partial tile (``.p/W``) is superseded when a
wider one or the full tile arrives, and a narrower request is answered with
a prefix of the wider content (c2sp.org/tlog-tiles: a partial tile is the
prefix of the full one). Writes go to a temporary file that is fsynced and
renamed into place before the index points at it; every read re-hashes the
blob, and a blob that is missing or does not match its name is dropped and
reported as a miss. With ``max_bytes`` the least recently used tiles are
evicted, except those the pinned checkpoint's right edge needs.

Several processes may share one directory: the index serialises writers,
and blob files are only created or removed inside a write transaction.

The cache stores bytes, not trust: what it returns is worth what the caller
verifies (``rekorkit.proxy`` verifies each tile up to a signed checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cachetools

from rekorkit.tiles import (
    TILE_WIDTH,
    TileID,
    bundle_prefix_len,
    edge_tiles_for_size,
    parse_tile_path,
)

__all__ = ["CacheStats", "FileSystemTileCache", "TileCache"]

_HASH_SIZE = 32  # SHA-256; a hash tile of width W is W * 32 bytes (c2sp.org/tlog-tiles)
_ENTRIES = -1  # the ``kind`` of entry bundles in the index; hash tiles use their level
_TOUCH_FLUSH = 256  # remembered reads flushed to the index in one transaction
_FULL_MEMO = 1 << 20  # full tiles whose blob name is remembered (about 150 bytes each)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    kind  INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    width INTEGER NOT NULL,
    sha   TEXT NOT NULL,
    size  INTEGER NOT NULL,
    atime REAL NOT NULL,
    PRIMARY KEY (kind, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tiles_sha ON tiles (sha);
CREATE INDEX IF NOT EXISTS tiles_atime ON tiles (atime);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class TileCache(Protocol):
    """What ``TileReader(cache=...)`` needs: tiles by id, bundles with ``entries=True``."""

    def get(self, tile: TileID, *, entries: bool = False) -> bytes | None:
        """The cached bytes of ``tile`` at its width, or ``None``."""

    def put(self, tile: TileID, data: bytes, *, entries: bool = False) -> None:
        """Stores ``data`` as ``tile``."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache: index totals and this process's counters."""

    tiles: int
    bytes: int
    max_bytes: int | None
    pinned_size: int | None
    hits: int
    misses: int
    dropped_corrupt: int
    evicted: int


def _kind(tile: TileID, entries: bool) -> int:
    if entries and tile.level != 0:
        raise ValueError(f"only level-0 tiles have entry bundles, not level {tile.level}")
    return _ENTRIES if entries else tile.level


def _prefix(data: bytes, width: int, stored_width: int, entries: bool) -> bytes:
    if width == stored_width:
        return data
    if entries:
        return data[: bundle_prefix_len(data, width)]
    return data[: width * _HASH_SIZE]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileSystemTileCache:
    """Content-addressed tiles and entry bundles in a directory (see the module docs).

    Args:
        directory: where the cache lives (created if missing).
        max_bytes: bound on the bytes of cached tiles; ``None`` is unbounded.
        fsync: make each blob durable before indexing it (off only for throwaway data).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int | None = None, fsync: bool = True
    ) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._blobs = self.directory / "blobs"
        self._tmp = self.directory / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._blobs_dir = os.fspath(self._blobs)
        self._token = os.urandom(6).hex()
        self._seq = itertools.count()
        self._dirs: set[str] = set()  # blob subdirectories known to exist
        # Guards the two below; never held across index queries or file reads.
        self._memo_lock = threading.Lock()
        self._touched: dict[tuple[int, int], float] = {}
        # The blob (sha, size) of full tiles and bundles seen in the index: their
        # content never changes, so reads of them skip the index. A blob that
        # has gone (evicted or dropped by any process) is a miss that asks it again.
        self._full: cachetools.LRUCache[tuple[int, int], tuple[str, int]] = cachetools.LRUCache(
            maxsize=_FULL_MEMO
        )
        self._db = sqlite3.connect(
            self.directory / "index.sqlite",
            timeout=30.0,
            isolation_level=None,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
        with self._write() as db:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)
        self.hits = self.misses = self.dropped_corrupt = self.evicted = 0
        self._remove_stale_temp_files()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Flush remembered reads and close the index."""
        with self._lock:
            if self._touched:
                with self._write():
                    pass
            self._db.close()

    def __enter__(self) -> FileSystemTileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_stale_temp_files(self) -> None:
        """Temporary files of processes that died mid-write (kill -9) are never indexed."""
        for tmp in self._tmp.iterdir():
            pid = tmp.name.split("-", 1)[0]
            if not pid.isdigit() or not _pid_alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: writers across processes queue here)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                with self._memo_lock:
                    touched, self._touched = self._touched, {}
                if touched:
                    self._db.executemany(
                        "UPDATE tiles SET atime = ? WHERE kind = ? AND idx = ?",
                        [(t, k, i) for (k, i), t in touched.items()],
                    )
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reads -------------------------------------------------------------

    def _blob_path(self, sha: str) -> str:
        return f"{self._blobs_dir}/{sha[:2]}/{sha}"

    def get(self, tile: TileID, *, entries: bool = False) -> bytes | None:
        """The bytes of ``tile`` (its entry bundle with ``entries``), or ``None``.

        A wider cached version answers a narrower request with its prefix. The
        blob is re-hashed; a corrupt or missing one is dropped and is a miss.
        """
        hit = self.get_with_digest(tile, entries=entries)
        return None if hit is None else hit[0]

    def get_with_digest(
        self, tile: TileID, *, entries: bool = False
    ) -> tuple[bytes, bytes | None] | None:
        """:meth:`get`, plus the SHA-256 of the bytes (checked on this read) when they
        are the whole stored blob, ``None`` when they are a prefix of it."""
        kind = _kind(tile, entries)
        key = (kind, tile.index)
        with self._memo_lock:
            known = self._full.get(key) if tile.width == TILE_WIDTH else None
        if known is None:
            with self._lock:
                row = self._db.execute(
                    "SELECT width, sha, size FROM tiles WHERE kind = ? AND idx = ?", key
                ).fetchone()
            if row is None or row[0] < tile.width:
                self.misses += 1
                return None
            stored_width, sha, size = row
        else:
            stored_width, (sha, size) = TILE_WIDTH, known
        data = self._read_blob(sha, size)
        digest = None if data is None else hashlib.sha256(data).digest()
        if data is None or digest is None or digest.hex() != sha:
            with self._memo_lock:
                self._full.pop(key, None)
            self._drop_blob(sha)
            self.dropped_corrupt += 1
            self.misses += 1
            return None
        self.hits += 1
        with self._memo_lock:
            if stored_width == TILE_WIDTH:
                self._full[key] = (sha, size)
            self._touched[key] = time.time()
            flush = len(self._touched) >= _TOUCH_FLUSH
        if flush:
            with self._write():
                pass
        if tile.width == stored_width:
            return data, digest
        return _prefix(data, tile.width, stored_width, entries), None

    def _read_blob(self, sha: str, size: int) -> bytes | None:
        """The blob's bytes (one byte more than ``size`` if it grew: the hash check
        catches any change), or ``None`` if it is gone."""
        try:
            fd = os.open(self._blob_path(sha), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, size + 1)
        finally:
            os.close(fd)

    def get_path(self, path: str) -> bytes | None:
        """:meth:`get` by tlog-tiles path (``tile/0/x001/234.p/5``, ``tile/entries/...``).

        Raises:
            MalformedError: the path is not a canonical tile path.
        """
        tile, entries = parse_tile_path(path)
        return self.get(tile, entries=entries)

    def widest(self, tile: TileID, *, entries: bool = False) -> int:
        """The widest width cached for ``tile``'s position (0: none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT width FROM tiles WHERE kind = ? AND idx = ?",
                (_kind(tile, entries), tile.index),
            ).fetchone()
        return int(row[0]) if row else 0

    # -- writes ------------------------------------------------------------

    def put(self, tile: TileID, data: bytes, *, entries: bool = False) -> None:
        """Stores ``data`` as ``tile`` (see :meth:`put_many`)."""
        self.put_many([(tile, entries, data)])

    def put_path(self, path: str, data: bytes) -> None:
        """:meth:`put` by tlog-tiles path."""
        tile, entries = parse_tile_path(path)
        self.put(tile, data, entries=entries)

    def put_many(
        self,
        items: Iterable[tuple[TileID, bool, bytes]],
        *,
        state: Mapping[str, bytes] | None = None,
    ) -> None:
        """Stores ``(tile, entries, data)`` items in one index transaction.

        A tile narrower than the cached version is ignored (the wider one
        holds it); a wider one supersedes it. Blobs are durable before the
        index names them; then the size bound is enforced. ``state`` values
        (see :meth:`set_state`) are saved in the same transaction, so progress
        recorded there is never ahead of the tiles.

        Raises:
            ValueError: a hash tile whose length is not ``width * 32``.
        """
        staged: dict[tuple[int, int], tuple[int, str, int, str]] = {}
        try:
            for tile, entries, data in items:
                kind = _kind(tile, entries)
                if not entries and len(data) != tile.width * _HASH_SIZE:
                    raise ValueError(
                        f"{tile.path}: {len(data)} bytes, expected {tile.width * _HASH_SIZE}"
                    )
                key = (kind, tile.index)
                prev = staged.get(key)
                if prev is not None:
                    if prev[0] >= tile.width:
                        continue
                    os.unlink(prev[3])
                sha = hashlib.sha256(data).hexdigest()
                staged[key] = (tile.width, sha, len(data), self._stage(data))
            if staged or state:
                self._commit(staged, state or {})
        finally:
            for *_, tmp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _commit(
        self, staged: dict[tuple[int, int], tuple[int, str, int, str]], state: Mapping[str, bytes]
    ) -> None:
        """Moves staged blobs into place and indexes them, in one write transaction."""
        now = time.time()
        with self._write() as db:
            old = self._rows(db, staged.keys())
            rows, superseded, dirs, delta = [], set(), set(), 0
            for (kind, index), (width, sha, size, tmp) in staged.items():
                prev = old.get((kind, index))
                if prev is not None and prev[0] >= width:
                    continue
                final = self._blob_path(sha)
                parent = os.path.dirname(final)
                if parent not in self._dirs:
                    os.makedirs(parent, exist_ok=True)
                    self._dirs.add(parent)
                os.replace(tmp, final)  # same name, same content: replacing is harmless
                dirs.add(parent)
                rows.append((kind, index, width, sha, size, now))
                if width == TILE_WIDTH:
                    with self._memo_lock:
                        self._full[(kind, index)] = (sha, size)
                delta += size - (prev[2] if prev else 0)
                if prev is not None and prev[1] != sha:
                    superseded.add(prev[1])
            if self._fsync:
                for d in dirs:
                    _fsync_dir(d)
            db.executemany("INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._add_bytes(db, delta)
            for sha in superseded:
                self._unlink_unreferenced(db, sha)
            self._evict(db)
            db.executemany(
                "INSERT OR REPLACE INTO state VALUES (?, ?)",
                [("user:" + name, value) for name, value in state.items()],
            )

    @staticmethod
    def _rows(
        db: sqlite3.Connection, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[int, str, int]]:
        """The index rows ``(width, sha, size)`` of ``keys``, in one query per kind."""
        by_kind: dict[int, list[int]] = {}
        for kind, index in keys:
            by_kind.setdefault(kind, []).append(index)
        found: dict[tuple[int, int], tuple[int, str, int]] = {}
        for kind, indices in by_kind.items():
            wanted = set(indices)
            for index, width, sha, size in db.execute(
                "SELECT idx, width, sha, size FROM tiles WHERE kind = ? AND idx BETWEEN ? AND ?",
                (kind, min(indices), max(indices)),
            ):
                if index in wanted:
                    found[(kind, index)] = (width, sha, size)
        return found

    def _stage(self, data: bytes) -> str:
        # pid first (stale files of dead processes are removed by it), then a token of
        # this instance and a counter: unique without a random read per blob.
        name = f"{os.getpid()}-{self._token}-{threading.get_ident()}-{next(self._seq)}.tmp"
        tmp = os.path.join(self._tmp, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def _add_bytes(self, db: sqlite3.Connection, delta: int) -> None:
        db.execute(
            "INSERT INTO state VALUES ('bytes', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (delta,),
        )

    def _unlink_unreferenced(self, db: sqlite3.Connection, sha: str) -> None:
        if db.execute("SELECT 1 FROM tiles WHERE sha = ? LIMIT 1", (sha,)).fetchone() is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._blob_path(sha))

    def _drop_blob(self, sha: str) -> None:
        """Forgets every tile stored as blob ``sha`` and removes the blob."""
        with self._write() as db:
            size = db.execute("SELECT COALESCE(SUM(size), 0) FROM tiles WHERE sha = ?", (sha,))
            self._add_bytes(db, -int(size.fetchone()[0]))
            db.execute("DELETE FROM tiles WHERE sha = ?", (sha,))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._blob_path(sha))

    # -- the size bound ----------------------------------------------------

    def pin_edge(self, size: int) -> None:
        """Protects from eviction what a checkpoint of ``size`` needs at its right edge.

        That is, per level, the last full tile and the partial tile
        (``rekorkit.tiles.edge_tiles_for_size``) and their entry bundles.
        """
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO state VALUES ('pinned_size', ?)", (size,))

    def _pinned(self, db: sqlite3.Connection) -> set[tuple[int, int]]:
        row = db.execute("SELECT value FROM state WHERE name = 'pinned_size'").fetchone()
        if row is None:
            return set()
        keep: set[tuple[int, int]] = set()
        for t in edge_tiles_for_size(int(row[0])):
            keep.add((t.level, t.index))
            if t.level == 0:
                keep.add((_ENTRIES, t.index))
        return keep

    def _evict(self, db: sqlite3.Connection) -> None:
        if self.max_bytes is None:
            return
        total = self._total(db)
        if total <= self.max_bytes:
            return
        keep = self._pinned(db)
        victims: list[tuple[int, int, str, int]] = []
        for kind, index, sha, size in db.execute(
            "SELECT kind, idx, sha, size FROM tiles ORDER BY atime"
        ):
            if total <= self.max_bytes:
                break
            if (kind, index) in keep:
                continue
            victims.append((kind, index, sha, size))
            total -= size
        for kind, index, sha, size in victims:
            with self._memo_lock:
                self._full.pop((kind, index), None)
            db.execute("DELETE FROM tiles WHERE kind = ? AND idx = ?", (kind, index))
            self._add_bytes(db, -size)
            self._unlink_unreferenced(db, sha)
        self.evicted += len(victims)

    @staticmethod
    def _total(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM state WHERE name = 'bytes'").fetchone()
        return int(row[0]) if row else 0

    # -- small durable state (the proxy's checkpoint, sync progress) --------

    def get_state(self, name: str) -> bytes | None:
        """A value saved with :meth:`set_state`, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM state WHERE name = ?", ("user:" + name,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def set_state(self, name: str, value: bytes) -> None:
        """Saves ``value`` under ``name`` in one transaction (atomic across crashes)."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", ("user:" + name, value))

    def stats(self) -> CacheStats:
        """Index totals and this process's hit, miss, drop and eviction counters."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
            total = self._total(self._db)
            pinned = self._db.execute(
                "SELECT value FROM state WHERE name = 'pinned_size'"
            ).fetchone()
        return CacheStats(
            tiles=int(count),
            bytes=total,
            max_bytes=self.max_bytes,
            pinned_size=int(pinned[0]) if pinned else None,
            hits=self.hits,
            misses=self.misses,
            dropped_corrupt=self.dropped_corrupt,
            evicted=self.evicted,
        )


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
