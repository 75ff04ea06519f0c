"""DuckDB storage for verified entries and checkpoints (the embedded default).

Tables:

* ``entries``: one row per verified entry (origin, index in the origin's tree,
  leaf hash, kind, API version, body, integrated time, the checkpoint size it
  was verified at, Rekor v1's global index).
* ``checkpoints``: every verified checkpoint per origin with its full signed
  note and when it was first and last seen.
* ``verified_ranges``: the index ranges of each origin whose entries are
  stored; entries and their range move in one transaction, so a crash never
  leaves rows outside a recorded range, and a run resumes from the ranges.
* ``artifact_digests``: an index from artifact digest to entry, built lazily
  (by SQL, off the hot path) when it is first queried.

Entries go in as Arrow record batches, never row by row. Commits whose row
count is a multiple of :data:`ROW_GROUP_ROWS` let DuckDB write row groups
straight into the file instead of through its WAL, which is several times
faster for 700-byte bodies.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from rekorkit.errors import MalformedError, StoreError, WriterConflictError
from rekorkit.store import (
    OriginSummary,
    StoredCheckpoint,
    StoredEntry,
    check_entry_rows,
    entry_uuid_bytes,
    missing_ranges,
    normalize_digest,
    same_size_fork,
    stored_entry,
)

__all__ = ["ENTRY_SCHEMA", "ROW_GROUP_ROWS", "DuckDBStore", "entry_batch"]

SCHEMA_VERSION = "1"

# DuckDB's row-group size: appends of whole row groups bypass the WAL.
ROW_GROUP_ROWS = 122_880

ENTRY_SCHEMA = pa.schema(
    [
        ("origin", pa.string()),
        ("log_index", pa.int64()),
        ("leaf_hash", pa.binary(32)),
        ("kind", pa.string()),
        ("api_version", pa.string()),
        ("body", pa.binary()),
        ("integrated_time", pa.int64()),
        ("checkpoint_size", pa.int64()),
        ("global_index", pa.int64()),
    ]
)

_COLUMNS = ", ".join(ENTRY_SCHEMA.names)

# Bodies and hashes are high-entropy: DuckDB's compression analysis costs far
# more than it saves on them, so they are stored uncompressed.
_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS entries (
        origin VARCHAR NOT NULL,
        log_index BIGINT NOT NULL,
        leaf_hash BLOB USING COMPRESSION uncompressed NOT NULL,
        kind VARCHAR,
        api_version VARCHAR,
        body BLOB USING COMPRESSION uncompressed NOT NULL,
        integrated_time BIGINT,
        checkpoint_size BIGINT NOT NULL,
        global_index BIGINT)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        origin VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        root_hash BLOB NOT NULL,
        note BLOB NOT NULL,
        first_seen TIMESTAMP NOT NULL,
        last_seen TIMESTAMP NOT NULL,
        PRIMARY KEY (origin, size))""",
    """CREATE TABLE IF NOT EXISTS verified_ranges (
        origin VARCHAR NOT NULL,
        start_index BIGINT NOT NULL,
        end_index BIGINT NOT NULL,
        checkpoint_size BIGINT NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS artifact_digests (
        origin VARCHAR NOT NULL,
        log_index BIGINT NOT NULL,
        digest VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoint_sightings (
        origin VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        root_hash BLOB NOT NULL,
        source VARCHAR NOT NULL,
        first_seen TIMESTAMP NOT NULL,
        last_seen TIMESTAMP NOT NULL,
        PRIMARY KEY (origin, size, source))""",
    """CREATE TABLE IF NOT EXISTS frontiers (
        origin VARCHAR PRIMARY KEY,
        start_index BIGINT NOT NULL,
        size BIGINT NOT NULL,
        root_hash BLOB NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
]

# Digest fields of the Rekor kinds, in JCS bodies (keys sorted): hashedrekord
# 0.0.1 spec.data.hash, dsse/intoto payloadHash (hex "value"), and Rekor v2
# hashedRekordV002.data / dsseV002.payloadHash (base64 "digest").
_DIGEST_RE = r'"(?:hash|payloadHash|data)":\{"algorithm":"[^"]*","((?:value|digest)":"[^"]*)"'

_KIND_RE = r'^\{"apiVersion":"(?P<v>[^"]{1,16})","kind":"(?P<k>[^"]{1,32})"'
_PREFIX_BYTES = 48  # enough for {"apiVersion":"0.0.1","kind":"hashedrekord"
_MAX_DISTINCT_PREFIXES = 4096


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def _aware(ts: _dt.datetime | None) -> _dt.datetime | None:
    return None if ts is None else ts.replace(tzinfo=_dt.UTC)


def _classify(bodies: pa.BinaryArray) -> tuple[pa.Array, pa.Array]:
    """Kind and apiVersion of every JCS body, without a per-entry Python loop.

    JCS sorts keys, so a Rekor body starts ``{"apiVersion":"V","kind":"K"``.
    The first bytes of every body are dictionary-encoded (a log holds few
    distinct prefixes) and the regex runs once per distinct prefix; logs whose
    entries are not Rekor bodies fall back to one vectorized regex pass.
    """
    prefixes = pc.binary_slice(bodies, 0, _PREFIX_BYTES)
    if not pc.any(pc.starts_with(prefixes, pattern='{"apiVersion":"')).as_py():
        # Not Rekor bodies (another tlog-tiles log): nothing to classify.
        return pa.nulls(len(bodies), pa.string()), pa.nulls(len(bodies), pa.string())
    encoded = pc.dictionary_encode(prefixes)
    distinct = encoded.dictionary
    if len(distinct) <= _MAX_DISTINCT_PREFIXES:
        found = pc.extract_regex(distinct, _KIND_RE)
        kinds = pc.struct_field(found, "k").cast(pa.string()).take(encoded.indices)
        versions = pc.struct_field(found, "v").cast(pa.string()).take(encoded.indices)
    else:
        found = pc.extract_regex(prefixes, _KIND_RE)
        kinds = pc.struct_field(found, "k").cast(pa.string())
        versions = pc.struct_field(found, "v").cast(pa.string())
    return kinds, versions


def entry_batch(
    origin: str,
    start: int,
    bodies: pa.BinaryArray | Sequence[bytes],
    leaf_hashes: np.ndarray | bytes,
    *,
    checkpoint_size: int,
    integrated_time: np.ndarray | Sequence[int | None] | None = None,
    global_index: np.ndarray | None = None,
    log_index: np.ndarray | None = None,
) -> pa.RecordBatch:
    """Build an Arrow batch of verified entries ``start .. start+n`` for a store.

    Args:
        origin: the tree's origin.
        start: the log index of the first entry (ignored when ``log_index`` is given).
        bodies: the leaf bytes, as an Arrow binary array or a sequence of bytes.
        leaf_hashes: the (n, 32) leaf hashes (or their concatenation).
        checkpoint_size: the size of the checkpoint they were verified against.
        integrated_time: Unix seconds per entry, when the log records it.
        global_index: Rekor v1 virtual indices, when they differ from the tree index.
        log_index: explicit tree indices (default: consecutive from ``start``).

    Raises:
        MalformedError: if the columns disagree in length.
    """
    arr = bodies if isinstance(bodies, pa.Array) else pa.array(bodies, type=pa.binary())
    if arr.type != pa.binary():
        arr = arr.cast(pa.binary())
    n = len(arr)
    hashes = (
        np.frombuffer(leaf_hashes, dtype=np.uint8)
        if isinstance(leaf_hashes, bytes)
        else leaf_hashes
    )
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1)
    if hashes.size != 32 * n:
        raise MalformedError(
            f"{hashes.size // 32} leaf hashes for {n} entries",
            what="entry batch",
            where="leaf_hashes",
        )
    idx = (
        np.arange(start, start + n, dtype=np.int64)
        if log_index is None
        else np.asarray(log_index, np.int64)
    )
    if len(idx) != n:
        raise MalformedError(
            f"{len(idx)} indices for {n} entries", what="entry batch", where="log_index"
        )
    kind, version = _classify(arr)
    times = (
        pa.nulls(n, pa.int64())
        if integrated_time is None
        else pa.array(integrated_time, pa.int64())
    )
    gidx = (
        pa.nulls(n, pa.int64())
        if global_index is None
        else pa.array(np.asarray(global_index, np.int64))
    )
    columns = [
        pa.repeat(origin, n).cast(pa.string()),
        pa.array(idx),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(hashes)]),
        kind,
        version,
        arr,
        times,
        pa.array(np.full(n, checkpoint_size, np.int64)),
        gidx,
    ]
    return pa.RecordBatch.from_arrays(columns, schema=ENTRY_SCHEMA)


class DuckDBStore:
    """Verified entries and checkpoints in one DuckDB file.

    Thread-safe: one connection guarded by a lock (DuckDB releases the GIL
    while it writes, so an engine can insert from a worker thread).

    Args:
        path: the database file, or ``":memory:"``.
        read_only: open without write access (queries only).
    """

    def __init__(self, path: str | Path = "rekorkit.duckdb", *, read_only: bool = False):
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._con.execute("SET enable_progress_bar = false")
        if not read_only:
            with self.transaction():
                for ddl in _DDL:
                    self._con.execute(ddl)
                self._con.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                    [SCHEMA_VERSION],
                )
        row = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: unsupported store schema version {row and row[0]!r}")

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the database (further calls fail)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the body in one DuckDB transaction: all of it is stored, or none."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            try:
                self._con.execute("COMMIT")
            except duckdb.Error as exc:
                raise StoreError(f"commit failed: {exc}") from exc

    # -- entries ---------------------------------------------------------------

    def commit_entries(
        self,
        origin: str,
        batches: Iterable[pa.RecordBatch | pa.Table],
        *,
        start: int,
        end: int,
        checkpoint: StoredCheckpoint | None = None,
    ) -> int:
        """Store verified entries ``[start, end)`` of ``origin`` in one transaction.

        The batches must hold exactly the indices ``start .. end-1`` in order,
        and the range must not overlap a stored one. The checkpoint, if given,
        is stored in the same transaction.

        Returns:
            the number of rows stored.

        Raises:
            StoreError: if the batches do not match the range or it overlaps.
            DivergenceError: if ``checkpoint`` contradicts a stored one.
        """
        table = pa.Table.from_batches([], schema=ENTRY_SCHEMA)
        parts = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b]) for b in batches]
        if parts:
            table = pa.concat_tables(parts)
        check_entry_rows(origin, table, start, end)
        with self.transaction() as con:
            if checkpoint is not None:
                self._add_checkpoint(con, checkpoint)
            if start == end:
                return 0
            overlap = con.execute(
                "SELECT start_index, end_index FROM verified_ranges "
                "WHERE origin = ? AND start_index < ? AND end_index > ? LIMIT 1",
                [origin, end, start],
            ).fetchone()
            if overlap is not None:
                raise WriterConflictError(
                    f"[{start}, {end}) of {origin} overlaps the stored range "
                    f"[{overlap[0]}, {overlap[1]})",
                    origin=origin,
                    range=[start, end],
                    stored=[int(overlap[0]), int(overlap[1])],
                )
            con.register("_rekorkit_batch", table)
            try:
                con.execute(
                    f"INSERT INTO entries ({_COLUMNS}) SELECT {_COLUMNS} FROM _rekorkit_batch"
                )
            finally:
                con.unregister("_rekorkit_batch")
            size = int(table.column("checkpoint_size")[0].as_py()) if table.num_rows else 0
            self._add_range(con, origin, start, end, size)
        return int(table.num_rows)

    def _add_range(self, con: Any, origin: str, start: int, end: int, size: int) -> None:
        rows = con.execute(
            "SELECT start_index, end_index, checkpoint_size FROM verified_ranges "
            "WHERE origin = ? AND (end_index = ? OR start_index = ?)",
            [origin, start, end],
        ).fetchall()
        new_start, new_end, new_size = start, end, size
        for s, e, cs in rows:
            new_start, new_end, new_size = min(new_start, s), max(new_end, e), max(new_size, cs)
        con.execute(
            "DELETE FROM verified_ranges WHERE origin = ? AND (end_index = ? OR start_index = ?)",
            [origin, start, end],
        )
        con.execute(
            "INSERT INTO verified_ranges VALUES (?, ?, ?, ?, ?)",
            [origin, new_start, new_end, new_size, _now()],
        )

    def verified_ranges(self, origin: str) -> list[tuple[int, int]]:
        """The stored index ranges ``[start, end)`` of ``origin``, in order."""
        with self._lock:
            rows = self._con.execute(
                "SELECT start_index, end_index FROM verified_ranges WHERE origin = ? "
                "ORDER BY start_index",
                [origin],
            ).fetchall()
        return [(int(s), int(e)) for s, e in rows]

    def missing_ranges(self, origin: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not yet stored for ``origin`` (what a run must verify)."""
        return missing_ranges(self.verified_ranges(origin), start, end)

    def last_verified_size(self, origin: str) -> int:
        """The end of the highest stored range of ``origin`` (0 when none): where a run resumes."""
        with self._lock:
            row = self._con.execute(
                "SELECT max(end_index) FROM verified_ranges WHERE origin = ?", [origin]
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def count(self, origin: str | None = None) -> int:
        """How many entries are stored (for ``origin``, or in total)."""
        with self._lock:
            if origin is None:
                row = self._con.execute(
                    "SELECT sum(end_index - start_index) FROM verified_ranges"
                ).fetchone()
            else:
                row = self._con.execute(
                    "SELECT sum(end_index - start_index) FROM verified_ranges WHERE origin = ?",
                    [origin],
                ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def origins(self) -> list[OriginSummary]:
        """A summary per stored origin: entries, verified size, latest checkpoint size."""
        with self._lock:
            rows = self._con.execute(
                """SELECT o.origin,
                          coalesce((SELECT sum(end_index - start_index) FROM verified_ranges r
                                    WHERE r.origin = o.origin), 0),
                          coalesce((SELECT max(end_index) FROM verified_ranges r
                                    WHERE r.origin = o.origin), 0),
                          coalesce((SELECT max(size) FROM checkpoints c
                                    WHERE c.origin = o.origin), 0)
                   FROM (SELECT origin FROM verified_ranges UNION SELECT origin FROM checkpoints) o
                   ORDER BY o.origin"""
            ).fetchall()
        return [OriginSummary(str(o), int(n), int(v), int(c)) for o, n, v, c in rows]

    def _entries(
        self, where: str, params: list[Any], limit: int | None = None
    ) -> list[StoredEntry]:
        sql = f"SELECT {_COLUMNS} FROM entries WHERE {where} ORDER BY origin, log_index"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._con.execute(sql, params).fetchall()
        return [stored_entry(r) for r in rows]

    def entry(self, origin: str, index: int) -> StoredEntry | None:
        """The stored entry at ``index`` in ``origin``'s tree, if any."""
        found = self._entries("origin = ? AND log_index = ?", [origin, index], limit=1)
        return found[0] if found else None

    def entries(self, origin: str, start: int, end: int) -> list[StoredEntry]:
        """The stored entries of ``origin`` with ``start <= index < end``."""
        return self._entries(
            "origin = ? AND log_index >= ? AND log_index < ?", [origin, start, end]
        )

    def entries_table(self, origin: str, start: int, end: int) -> pa.Table:
        """Like :meth:`entries`, as one Arrow table (for bulk readers)."""
        with self._lock:
            # A relation query is refused while an earlier execute() has unread rows.
            self._con.execute("SELECT 1").fetchall()
            return self._con.sql(
                f"SELECT {_COLUMNS} FROM entries "
                "WHERE origin = ? AND log_index >= ? AND log_index < ? ORDER BY log_index",
                params=[origin, start, end],
            ).to_arrow_table()

    def entries_at(self, origin: str, indices: Sequence[int]) -> pa.Table:
        """The stored entries of ``origin`` at ``indices``, as one Arrow table in index order."""
        with self._lock:
            self._con.execute("SELECT 1").fetchall()
            return self._con.sql(
                f"SELECT {_COLUMNS} FROM entries WHERE origin = ? "
                "AND log_index IN (SELECT UNNEST(?::BIGINT[])) ORDER BY log_index",
                params=[origin, [int(i) for i in indices]],
            ).to_arrow_table()

    def find_by_global_index(self, index: int) -> list[StoredEntry]:
        """Entries whose Rekor v1 global (virtual) index is ``index``."""
        return self._entries("global_index = ?", [index])

    def find_by_uuid(self, uuid: str) -> list[StoredEntry]:
        """Entries with this UUID (64 hex, or an 80-hex entryID whose last 64 are the UUID)."""
        return self._entries("leaf_hash = ?", [entry_uuid_bytes(uuid)])

    def find_by_digest(self, digest: str | bytes) -> list[StoredEntry]:
        """Entries whose artifact (or DSSE payload) digest is ``digest``.

        ``digest`` is hex, ``sha256:<hex>`` or raw bytes. The digest index is
        brought up to date first, by one SQL pass over entries not yet indexed.
        """
        wanted = normalize_digest(digest)
        self.refresh_digest_index()
        return self._entries(
            "(origin, log_index) IN "
            "(SELECT origin, log_index FROM artifact_digests WHERE digest = ?)",
            [wanted],
        )

    def refresh_digest_index(self) -> int:
        """Index the artifact digests of entries stored since the last refresh; return how many."""
        with self.transaction() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'digest_rowid'").fetchone()
            low = int(row[0]) if row else 0
            top = con.execute("SELECT max(rowid) FROM entries").fetchone()
            if top is None or top[0] is None or int(top[0]) < low:
                return 0
            con.execute(
                f"""INSERT INTO artifact_digests
                    SELECT origin, log_index,
                           CASE WHEN starts_with(m, 'value') THEN lower(substr(m, 9))
                                ELSE lower(hex(try(from_base64(substr(m, 10))))) END
                    FROM (SELECT origin, log_index,
                                 unnest(regexp_extract_all(try(decode(body)),
                                                           '{_DIGEST_RE}', 1)) AS m
                          FROM entries WHERE rowid >= ? AND rowid <= ?)""",
                [low, int(top[0])],
            )
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('digest_rowid', ?)", [str(int(top[0]) + 1)]
            )
            return int(top[0]) + 1 - low

    # -- checkpoints (CheckpointStore) ---------------------------------------

    def _add_checkpoint(self, con: Any, cp: StoredCheckpoint) -> bool:
        row = con.execute(
            "SELECT root_hash, note FROM checkpoints WHERE origin = ? AND size = ?",
            [cp.origin, cp.size],
        ).fetchone()
        now = _now()
        if row is not None:
            if bytes(row[0]) != cp.root_hash:
                raise same_size_fork(cp, bytes(row[0]), bytes(row[1]))
            con.execute(
                "UPDATE checkpoints SET last_seen = ? WHERE origin = ? AND size = ?",
                [now, cp.origin, cp.size],
            )
            return False
        con.execute(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
            [cp.origin, cp.size, cp.root_hash, cp.note, cp.first_seen or now, cp.last_seen or now],
        )
        return True

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> bool:
        """Store a verified checkpoint; return True if it was new (else ``last_seen`` is updated).

        Raises:
            DivergenceError: a different root is stored for the same origin and size.
        """
        with self.transaction() as con:
            return self._add_checkpoint(con, checkpoint)

    def _checkpoints(self, where: str, params: list[Any], tail: str = "") -> list[StoredCheckpoint]:
        with self._lock:
            rows = self._con.execute(
                "SELECT origin, size, root_hash, note, first_seen, last_seen "
                f"FROM checkpoints WHERE {where} {tail}",
                params,
            ).fetchall()
        return [
            StoredCheckpoint(r[0], int(r[1]), bytes(r[2]), bytes(r[3]), _aware(r[4]), _aware(r[5]))
            for r in rows
        ]

    def latest_checkpoint(self, origin: str) -> StoredCheckpoint | None:
        """The largest stored checkpoint of ``origin``, if any."""
        found = self._checkpoints("origin = ?", [origin], "ORDER BY size DESC LIMIT 1")
        return found[0] if found else None

    def checkpoint(self, origin: str, size: int) -> StoredCheckpoint | None:
        """The stored checkpoint of ``origin`` at ``size``, if any."""
        found = self._checkpoints("origin = ? AND size = ?", [origin, size])
        return found[0] if found else None

    def checkpoints(self, origin: str) -> list[StoredCheckpoint]:
        """Every stored checkpoint of ``origin``, smallest first."""
        return self._checkpoints("origin = ?", [origin], "ORDER BY size")

    # -- sightings and frontiers (the sync service) ----------------------------

    def _record_sighting(self, con: Any, cp: StoredCheckpoint, source: str) -> None:
        now = _now()
        con.execute(
            "INSERT INTO checkpoint_sightings VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET last_seen = excluded.last_seen",
            [cp.origin, cp.size, cp.root_hash, source, now, now],
        )

    def record_sighting(self, checkpoint: StoredCheckpoint, *, source: str) -> None:
        """Record that ``source`` (a log URL, mirror or witness) served ``checkpoint``."""
        with self.transaction() as con:
            self._record_sighting(con, checkpoint, source)

    def sightings(self, origin: str) -> list[tuple[int, bytes, str, _dt.datetime, _dt.datetime]]:
        """Every ``(size, root, source, first_seen, last_seen)`` recorded for ``origin``."""
        with self._lock:
            rows = self._con.execute(
                "SELECT size, root_hash, source, first_seen, last_seen "
                "FROM checkpoint_sightings WHERE origin = ? ORDER BY size, source",
                [origin],
            ).fetchall()
        return [(int(r[0]), bytes(r[1]), str(r[2]), _aware(r[3]), _aware(r[4])) for r in rows]  # type: ignore[misc]

    def advance_frontier(self, checkpoint: StoredCheckpoint, *, start: int, source: str) -> None:
        """Record ``checkpoint`` as fully processed, in one transaction.

        The entries ``[start, checkpoint.size)`` must already be stored; the
        checkpoint, where it was seen, and the new frontier are written
        together, so a crash leaves either the old frontier or the new one.

        Raises:
            StoreError: entries are missing, or the frontier would move back.
            DivergenceError: the checkpoint contradicts a stored one.
        """
        origin = checkpoint.origin
        with self.transaction() as con:
            if start < checkpoint.size:
                row = con.execute(
                    "SELECT count(*) FROM verified_ranges "
                    "WHERE origin = ? AND start_index <= ? AND end_index >= ?",
                    [origin, start, checkpoint.size],
                ).fetchone()
                if not row or not row[0]:
                    raise StoreError(
                        f"{origin}: entries [{start}, {checkpoint.size}) are not all stored"
                    )
            old = con.execute("SELECT size FROM frontiers WHERE origin = ?", [origin]).fetchone()
            if old is not None and int(old[0]) > checkpoint.size:
                raise StoreError(
                    f"{origin}: frontier {old[0]} cannot move back to {checkpoint.size}"
                )
            self._add_checkpoint(con, checkpoint)
            self._record_sighting(con, checkpoint, source)
            con.execute(
                "INSERT INTO frontiers VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "size = excluded.size, root_hash = excluded.root_hash, "
                "updated_at = excluded.updated_at",
                [origin, start, checkpoint.size, checkpoint.root_hash, _now()],
            )

    def frontier(self, origin: str) -> tuple[int, StoredCheckpoint] | None:
        """``(start, checkpoint)``: where the sync of ``origin`` began, its last full checkpoint."""
        with self._lock:
            row = self._con.execute(
                "SELECT f.start_index, c.origin, c.size, c.root_hash, c.note, c.first_seen, "
                "c.last_seen FROM frontiers f JOIN checkpoints c "
                "ON c.origin = f.origin AND c.size = f.size WHERE f.origin = ?",
                [origin],
            ).fetchone()
        if row is None:
            return None
        cp = StoredCheckpoint(
            row[1], int(row[2]), bytes(row[3]), bytes(row[4]), _aware(row[5]), _aware(row[6])
        )
        return int(row[0]), cp
