"""PostgreSQL storage for verified entries and checkpoints, shared by many processes.

The public API mirrors :class:`rekorkit.store.duckdb.DuckDBStore`, so an
engine takes either. What sharing adds:

* entries go in by binary ``COPY`` (never row inserts), and
  ``UNIQUE (origin, log_index)`` makes a retried range fail instead of
  duplicating;
* the latest checkpoint of an origin moves by compare-and-swap: a writer that
  read the head (``latest_checkpoint``) and proved consistency from it can only
  advance the head from that size. If another writer moved it meanwhile the
  write fails with :class:`WriterConflictError` (a second view of the log must
  be proven consistent with the first, never overwrite it);
* verified ranges are merged under the origin's row lock; a range that overlaps
  a stored one fails loudly, so two writers never both store one range;
* the schema is versioned (``schema_migrations``) and migrated under an
  advisory lock, so processes starting together migrate once;
* distributed audits stage entries by ``COPY`` from their workers
  (:meth:`PostgresStore.stage_entries`) and the coordinator moves them into
  ``entries`` with their range in one transaction, after the whole range has
  hashed up to the signed root (:meth:`PostgresStore.commit_staged`).
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from rekorkit.errors import StoreError, WriterConflictError
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
from rekorkit.store.duckdb import ENTRY_SCHEMA

__all__ = [
    "MIGRATIONS",
    "PostgresStore",
    "apply_migrations",
    "copy_into",
    "copy_stream",
    "fetch_table",
    "safe_url",
]

_COLUMNS = ENTRY_SCHEMA.names
_COLUMN_LIST = ", ".join(_COLUMNS)
_COPY_ROWS = 32_768  # rows encoded per COPY write: bounds the extra memory
_MIGRATION_LOCK = 0x72656B6F  # pg_advisory_xact_lock key: "reko"

# Digest fields of the Rekor kinds in JCS bodies (the same fields DuckDBStore
# indexes): hashedrekord spec.data.hash (hex "value"), dsse/intoto payloadHash,
# Rekor v2 hashedRekordV002.data / dsseV002.payloadHash (base64 "digest").
_DIGEST_RE = r'"(?:hash|payloadHash|data)":\{"algorithm":"[^"]*","((?:value|digest)":"[^"]*)"'

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE entries (
            origin text NOT NULL,
            log_index bigint NOT NULL,
            leaf_hash bytea NOT NULL,
            kind text,
            api_version text,
            body bytea NOT NULL,
            integrated_time bigint,
            checkpoint_size bigint NOT NULL,
            global_index bigint,
            CONSTRAINT entries_origin_index UNIQUE (origin, log_index));
        CREATE INDEX entries_leaf_hash ON entries USING hash (leaf_hash);
        CREATE INDEX entries_global_index ON entries (global_index)
            WHERE global_index IS NOT NULL;
        CREATE TABLE checkpoints (
            origin text NOT NULL,
            size bigint NOT NULL,
            root_hash bytea NOT NULL,
            note bytea NOT NULL,
            first_seen timestamptz NOT NULL,
            last_seen timestamptz NOT NULL,
            PRIMARY KEY (origin, size));
        CREATE TABLE heads (
            origin text PRIMARY KEY,
            checkpoint_size bigint NOT NULL DEFAULT 0,
            verified_size bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE verified_ranges (
            origin text NOT NULL,
            start_index bigint NOT NULL,
            end_index bigint NOT NULL,
            checkpoint_size bigint NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (origin, start_index));
        CREATE TABLE entry_commits (
            origin text NOT NULL,
            start_index bigint NOT NULL,
            end_index bigint NOT NULL,
            digests_indexed boolean NOT NULL DEFAULT false,
            PRIMARY KEY (origin, start_index));
        CREATE TABLE artifact_digests (
            origin text NOT NULL,
            log_index bigint NOT NULL,
            digest text NOT NULL);
        CREATE INDEX artifact_digests_digest ON artifact_digests (digest);
        CREATE UNLOGGED TABLE entry_staging (
            run_id text NOT NULL,
            origin text NOT NULL,
            log_index bigint NOT NULL,
            leaf_hash bytea NOT NULL,
            kind text,
            api_version text,
            body bytea NOT NULL,
            integrated_time bigint,
            checkpoint_size bigint NOT NULL,
            global_index bigint,
            PRIMARY KEY (run_id, log_index));
        """,
    ),
    (
        2,
        """
        CREATE TABLE checkpoint_sightings (
            origin text NOT NULL,
            size bigint NOT NULL,
            root_hash bytea NOT NULL,
            source text NOT NULL,
            first_seen timestamptz NOT NULL,
            last_seen timestamptz NOT NULL,
            PRIMARY KEY (origin, size, source));
        CREATE TABLE frontiers (
            origin text PRIMARY KEY,
            start_index bigint NOT NULL,
            size bigint NOT NULL,
            root_hash bytea NOT NULL,
            updated_at timestamptz NOT NULL);
        """,
    ),
)
"""The schema, version by version; a store applies the versions it has not seen."""


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _as_table(batches: Iterable[pa.RecordBatch | pa.Table]) -> pa.Table:
    parts = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b]) for b in batches]
    if not parts:
        return pa.Table.from_batches([], schema=ENTRY_SCHEMA)
    return pa.concat_tables(parts).select(_COLUMNS)


# PostgreSQL COPY binary format ("COPY", section "Binary Format"): a signature,
# flags and header-extension length, then per row a 16-bit field count and per
# field a 32-bit length (-1 for NULL) and the value, big-endian; then -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"


def _fixed(data: np.ndarray, width: int) -> pa.Array:
    """An (n, width) uint8 array as an Arrow binary array of n values (no copy until cast)."""
    n = len(data)
    buf = pa.py_buffer(np.ascontiguousarray(data, np.uint8))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, buf]).cast(
        pa.large_binary()
    )


def _int8_field(column: pa.Array) -> pa.Array:
    n = len(column)
    out = np.empty((n, 12), np.uint8)
    out[:, :4] = np.frombuffer(b"\x00\x00\x00\x08", np.uint8)
    values = column.fill_null(0).to_numpy(zero_copy_only=False).astype(">i8")
    out[:, 4:] = values.view(np.uint8).reshape(n, 8)
    field = _fixed(out, 12)
    if column.null_count == 0:
        return field
    return pc.if_else(column.is_null(), pa.scalar(_NULL, pa.large_binary()), field)


def _bytes_fields(column: pa.Array) -> list[pa.Array]:
    lengths = pc.binary_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
    prefix = _fixed(lengths.astype(">i4").view(np.uint8).reshape(-1, 4), 4)
    return [prefix, column.cast(pa.large_binary()).fill_null(b"")]


def copy_stream(table: pa.Table) -> pa.Buffer:
    """The binary COPY payload of ``table``'s rows (int64, string, binary columns).

    Every field is encoded column-wise in Arrow and the rows joined in one
    pass, with no Python loop over rows.
    """
    table = table.combine_chunks()
    n = table.num_rows
    count = np.frombuffer(table.num_columns.to_bytes(2, "big"), np.uint8)
    pieces: list[pa.Array] = [_fixed(np.broadcast_to(count, (n, 2)), 2)]
    for column in table.columns:
        array = column.chunk(0) if column.num_chunks else pa.array([], column.type)
        if pa.types.is_integer(array.type):
            pieces.append(_int8_field(array.cast(pa.int64())))
        else:
            pieces.extend(_bytes_fields(array))
    rows = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(rows.buffers()[1], np.int64, n + 1, rows.offset * 8)
    data = rows.buffers()[2]
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def copy_into(cur: psycopg.Cursor[Any], target: str, rows: pa.Table) -> None:
    """Append ``rows`` to table ``target`` by binary ``COPY``, a row group at a time.

    The columns are ``rows``' column names; the caller's transaction decides
    when the rows become visible.
    """
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
    )
    # The queued writer sends from a thread, so encoding overlaps the server's work.
    with cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(_COPY_HEADER)
        for start in range(0, rows.num_rows, _COPY_ROWS):
            copy.write(memoryview(copy_stream(rows.slice(start, _COPY_ROWS))))
        copy.write(_COPY_TRAILER)


def fetch_table(
    cur: psycopg.Cursor[Any], query: str, params: Sequence[Any], schema: pa.Schema
) -> pa.Table:
    """The rows of ``query`` as an Arrow table of ``schema``, in ``cur``'s transaction.

    Read by a binary cursor on the same connection: ``bytea`` values arrive as
    their bytes, not as hex text to decode (several times faster for bodies).
    """
    with cur.connection.cursor(binary=True) as read:
        read.execute(query.encode(), params)
        rows = read.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.table(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def apply_migrations(
    cur: psycopg.Cursor[Any], table: str, migrations: Sequence[tuple[int, str]]
) -> int:
    """Apply the ``migrations`` newer than the version recorded in ``table``; the version.

    Run it inside a transaction: the advisory lock (held to its end) makes
    processes that start together apply each version once, and a failed
    version leaves the schema as it was. A version newer than ``migrations``
    knows is returned as it is: the caller refuses it.
    """
    cur.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
    name = sql.Identifier(table)
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL)"
        ).format(name)
    )
    cur.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(name))
    row = cur.fetchone()
    have = int(row[0]) if row else 0
    for version, ddl in migrations:
        if version > have:
            cur.execute(ddl.encode())
            cur.execute(sql.SQL("INSERT INTO {} VALUES (%s, now())").format(name), [version])
            have = version
    return have


class PostgresStore:
    """Verified entries and checkpoints in a PostgreSQL database (psycopg 3).

    One connection per store, guarded by a lock; processes share the database,
    not the store object. Open one per process (or per Dask worker).

    Args:
        url: a ``postgresql://`` URL (libpq connection string).
        read_only: refuse writes (queries only); the schema must exist.
        connect_timeout: seconds to wait for the server.
    """

    def __init__(self, url: str, *, read_only: bool = False, connect_timeout: float = 10) -> None:
        self.url = url
        self.read_only = read_only
        try:
            self._con = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout))
        except psycopg.Error as exc:
            raise StoreError(f"cannot open PostgreSQL store {safe_url(url)}: {exc}") from exc
        self._lock = threading.RLock()
        self._views: dict[str, int] = {}
        if read_only:
            self._con.read_only = True
        else:
            self._migrate()
        version = self.schema_version()
        if version != MIGRATIONS[-1][0]:
            raise StoreError(f"{safe_url(url)}: unsupported store schema version {version}")

    # -- lifecycle and schema -------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction() as cur:
            apply_migrations(cur, "schema_migrations", MIGRATIONS)

    def schema_version(self) -> int:
        """The highest schema migration applied to the database (0 if none)."""
        try:
            with self._cursor() as cur:
                cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                row = cur.fetchone()
        except StoreError:
            return 0
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the connection (further calls fail)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            try:
                with self._con.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL store {safe_url(self.url)}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """Run the body in one transaction: all of it is stored, or none.

        Raises:
            StoreError: the database failed (the connection lost, a constraint broken).
        """
        with self._lock:
            try:
                with self._con.transaction(), self._con.cursor() as cur:
                    yield cur
            except psycopg.errors.UniqueViolation as exc:
                raise WriterConflictError(
                    f"another writer stored these rows first: {exc.diag.message_detail}",
                    constraint=exc.diag.constraint_name,
                ) from exc
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL store {safe_url(self.url)}: {exc}") from exc

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

        Same contract as :meth:`DuckDBStore.commit_entries`; rows go in by binary COPY.

        Raises:
            StoreError: the batches do not match the range.
            WriterConflictError: the range overlaps a stored one (another writer
                stored it), or ``checkpoint`` would move a head another writer moved.
            DivergenceError: ``checkpoint`` contradicts a stored one.
        """
        table = _as_table(batches)
        check_entry_rows(origin, table, start, end)
        with self.transaction() as cur:
            self._lock_head(cur, origin)
            if checkpoint is not None:
                self._add_checkpoint(cur, checkpoint)
            if start == end:
                return 0
            self._check_overlap(cur, origin, start, end)
            copy_into(cur, "entries", table)
            size = int(table.column("checkpoint_size")[0].as_py())
            self._add_range(cur, origin, start, end, size)
        return int(table.num_rows)

    def stage_entries(self, run_id: str, table: pa.Table) -> int:
        """COPY verified-but-unproven entries into the staging table for ``run_id``.

        Idempotent per index range: rows of ``run_id`` in the table's index
        range are replaced, so a retried task never duplicates. Staged rows
        are not entries until :meth:`commit_staged` moves them.
        """
        table = _as_table([table])
        if table.num_rows == 0:
            return 0
        idx = table.column("log_index").to_numpy()
        lo, hi = int(idx.min()), int(idx.max()) + 1
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM entry_staging WHERE run_id = %s AND log_index >= %s "
                "AND log_index < %s",
                [run_id, lo, hi],
            )
            run = pa.array([run_id] * table.num_rows, pa.string())
            copy_into(cur, "entry_staging", table.add_column(0, "run_id", run))
        return int(table.num_rows)

    def commit_staged(
        self,
        origin: str,
        run_id: str,
        *,
        ranges: Sequence[tuple[int, int]],
        checkpoint: StoredCheckpoint | None = None,
    ) -> int:
        """Move the staged entries of ``run_id`` in ``ranges`` into ``entries``, in one
        transaction with their verified ranges and checkpoint; drop the run's staging.

        Call it only once the whole range has hashed up to the signed root.

        Returns:
            the number of entries stored.

        Raises:
            StoreError: staged rows are missing (a lost write, a server restart):
                nothing is stored.
            WriterConflictError, DivergenceError: as :meth:`commit_entries`.
        """
        total = 0
        with self.transaction() as cur:
            self._lock_head(cur, origin)
            if checkpoint is not None:
                self._add_checkpoint(cur, checkpoint)
            for start, end in ranges:
                if not 0 <= start < end:
                    raise StoreError(f"bad range [{start}, {end})")
                self._check_overlap(cur, origin, start, end)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO entries ({cols}) SELECT {cols} FROM entry_staging "
                        "WHERE run_id = %s AND origin = %s AND log_index >= %s "
                        "AND log_index < %s"
                    ).format(cols=sql.SQL(_COLUMN_LIST)),
                    [run_id, origin, start, end],
                )
                if cur.rowcount != end - start:
                    raise StoreError(
                        f"run {run_id}: {cur.rowcount} staged entries for [{start}, {end}) "
                        f"of {origin}, expected {end - start} (a lost write or a restart); "
                        "nothing was marked verified"
                    )
                size = checkpoint.size if checkpoint is not None else 0
                self._add_range(cur, origin, start, end, size)
                total += end - start
            cur.execute("DELETE FROM entry_staging WHERE run_id = %s", [run_id])
        return total

    def drop_staged(self, run_id: str) -> None:
        """Forget the staged entries of ``run_id`` (a failed or abandoned run)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM entry_staging WHERE run_id = %s", [run_id])

    def _lock_head(self, cur: psycopg.Cursor[Any], origin: str) -> tuple[int, int]:
        cur.execute("INSERT INTO heads (origin) VALUES (%s) ON CONFLICT DO NOTHING", [origin])
        cur.execute(
            "SELECT checkpoint_size, verified_size FROM heads WHERE origin = %s FOR UPDATE",
            [origin],
        )
        row = cur.fetchone()
        assert row is not None  # inserted above
        return int(row[0]), int(row[1])

    def _check_overlap(self, cur: psycopg.Cursor[Any], origin: str, start: int, end: int) -> None:
        cur.execute(
            "SELECT start_index, end_index FROM verified_ranges "
            "WHERE origin = %s AND start_index < %s AND end_index > %s LIMIT 1",
            [origin, end, start],
        )
        row = cur.fetchone()
        if row is not None:
            raise WriterConflictError(
                f"[{start}, {end}) of {origin} overlaps the stored range [{row[0]}, {row[1]})",
                origin=origin,
                range=[start, end],
                stored=[int(row[0]), int(row[1])],
            )

    def _add_range(
        self, cur: psycopg.Cursor[Any], origin: str, start: int, end: int, size: int
    ) -> None:
        cur.execute(
            "DELETE FROM verified_ranges "
            "WHERE origin = %s AND (end_index = %s OR start_index = %s) "
            "RETURNING start_index, end_index, checkpoint_size",
            [origin, start, end],
        )
        new_start, new_end, new_size = start, end, size
        for s, e, cs in cur.fetchall():
            new_start, new_end, new_size = min(new_start, s), max(new_end, e), max(new_size, cs)
        cur.execute(
            "INSERT INTO verified_ranges VALUES (%s, %s, %s, %s, %s)",
            [origin, new_start, new_end, new_size, _now()],
        )
        cur.execute(
            "INSERT INTO entry_commits (origin, start_index, end_index) VALUES (%s, %s, %s)",
            [origin, start, end],
        )
        cur.execute(
            "UPDATE heads SET verified_size = greatest(verified_size, %s), updated_at = now() "
            "WHERE origin = %s",
            [end, origin],
        )

    def verified_ranges(self, origin: str) -> list[tuple[int, int]]:
        """The stored index ranges ``[start, end)`` of ``origin``, in order."""
        rows = self._fetch(
            "SELECT start_index, end_index FROM verified_ranges WHERE origin = %s "
            "ORDER BY start_index",
            [origin],
        )
        return [(int(s), int(e)) for s, e in rows]

    def missing_ranges(self, origin: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not yet stored for ``origin`` (what a run must verify)."""
        return missing_ranges(self.verified_ranges(origin), start, end)

    def last_verified_size(self, origin: str) -> int:
        """The end of the highest stored range of ``origin`` (0 when none): where a run resumes."""
        rows = self._fetch("SELECT verified_size FROM heads WHERE origin = %s", [origin])
        return int(rows[0][0]) if rows else 0

    def count(self, origin: str | None = None) -> int:
        """How many entries are stored (for ``origin``, or in total)."""
        if origin is None:
            rows = self._fetch("SELECT sum(end_index - start_index) FROM verified_ranges", [])
        else:
            rows = self._fetch(
                "SELECT sum(end_index - start_index) FROM verified_ranges WHERE origin = %s",
                [origin],
            )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def origins(self) -> list[OriginSummary]:
        """A summary per stored origin: entries, verified size, latest checkpoint size."""
        rows = self._fetch(
            """SELECT h.origin,
                      coalesce((SELECT sum(end_index - start_index) FROM verified_ranges r
                                WHERE r.origin = h.origin), 0),
                      h.verified_size, h.checkpoint_size
               FROM heads h ORDER BY h.origin""",
            [],
        )
        return [OriginSummary(str(o), int(n), int(v), int(c)) for o, n, v, c in rows]

    def _fetch(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall()

    def _entries(
        self, where: str, params: list[Any], limit: int | None = None
    ) -> list[StoredEntry]:
        query = f"SELECT {_COLUMN_LIST} FROM entries WHERE {where} ORDER BY origin, log_index"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [stored_entry(r) for r in self._fetch(query, params)]

    def entry(self, origin: str, index: int) -> StoredEntry | None:
        """The stored entry at ``index`` in ``origin``'s tree, if any."""
        found = self._entries("origin = %s AND log_index = %s", [origin, index], limit=1)
        return found[0] if found else None

    def entries(self, origin: str, start: int, end: int) -> list[StoredEntry]:
        """The stored entries of ``origin`` with ``start <= index < end``."""
        return self._entries(
            "origin = %s AND log_index >= %s AND log_index < %s", [origin, start, end]
        )

    def entries_table(self, origin: str, start: int, end: int) -> pa.Table:
        """Like :meth:`entries`, as one Arrow table (for bulk readers)."""
        rows = self._fetch(
            f"SELECT {_COLUMN_LIST} FROM entries "
            "WHERE origin = %s AND log_index >= %s AND log_index < %s ORDER BY log_index",
            [origin, start, end],
        )
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(_COLUMNS)
        return pa.table(
            [pa.array(list(c), type=f.type) for c, f in zip(columns, ENTRY_SCHEMA, strict=True)],
            schema=ENTRY_SCHEMA,
        )

    def entries_at(self, origin: str, indices: Sequence[int]) -> pa.Table:
        """The stored entries of ``origin`` at ``indices``, as one Arrow table in index order."""
        rows = self._fetch(
            f"SELECT {_COLUMN_LIST} FROM entries "
            "WHERE origin = %s AND log_index = ANY(%s) ORDER BY log_index",
            [origin, [int(i) for i in indices]],
        )
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(_COLUMNS)
        return pa.table(
            [pa.array(list(c), type=f.type) for c, f in zip(columns, ENTRY_SCHEMA, strict=True)],
            schema=ENTRY_SCHEMA,
        )

    def find_by_global_index(self, index: int) -> list[StoredEntry]:
        """Entries whose Rekor v1 global (virtual) index is ``index``."""
        return self._entries("global_index = %s", [index])

    def find_by_uuid(self, uuid: str) -> list[StoredEntry]:
        """Entries with this UUID (64 hex, or an 80-hex entryID whose last 64 are the UUID)."""
        return self._entries("leaf_hash = %s", [entry_uuid_bytes(uuid)])

    def find_by_digest(self, digest: str | bytes) -> list[StoredEntry]:
        """Entries whose artifact (or DSSE payload) digest is ``digest`` (hex, ``sha256:``, bytes).

        The digest index is brought up to date first, by SQL over the commits
        not yet indexed.
        """
        wanted = normalize_digest(digest)
        self.refresh_digest_index()
        return self._entries(
            "(origin, log_index) IN "
            "(SELECT origin, log_index FROM artifact_digests WHERE digest = %s)",
            [wanted],
        )

    def refresh_digest_index(self) -> int:
        """Index the artifact digests of commits not yet indexed; return how many entries.

        Concurrent refreshers split the work (``FOR UPDATE SKIP LOCKED``), never
        indexing one commit twice.
        """
        done = 0
        with self.transaction() as cur:
            cur.execute(
                "SELECT origin, start_index, end_index FROM entry_commits "
                "WHERE NOT digests_indexed FOR UPDATE SKIP LOCKED"
            )
            for origin, start, end in cur.fetchall():
                # encode(..., 'escape') reads any bytes as text; digests are ASCII.
                cur.execute(
                    """INSERT INTO artifact_digests
                       SELECT origin, log_index,
                              CASE WHEN m[1] LIKE 'value%%' THEN lower(substr(m[1], 9))
                                   ELSE encode(decode(substr(m[1], 10), 'base64'), 'hex') END
                       FROM (SELECT origin, log_index,
                                    regexp_matches(encode(body, 'escape'), %s, 'g') AS m
                             FROM entries WHERE origin = %s AND log_index >= %s
                                  AND log_index < %s) found""",
                    [_DIGEST_RE, origin, start, end],
                )
                cur.execute(
                    "UPDATE entry_commits SET digests_indexed = true "
                    "WHERE origin = %s AND start_index = %s",
                    [origin, start],
                )
                done += int(end) - int(start)
        return done

    # -- checkpoints (CheckpointStore), compare-and-swap on the head -----------

    def _add_checkpoint(
        self, cur: psycopg.Cursor[Any], cp: StoredCheckpoint, expected: int | None = None
    ) -> bool:
        cur.execute(
            "SELECT root_hash, note FROM checkpoints WHERE origin = %s AND size = %s",
            [cp.origin, cp.size],
        )
        row = cur.fetchone()
        now = _now()
        if row is not None:
            if bytes(row[0]) != cp.root_hash:
                raise same_size_fork(cp, bytes(row[0]), bytes(row[1]))
            cur.execute(
                "UPDATE checkpoints SET last_seen = %s WHERE origin = %s AND size = %s",
                [now, cp.origin, cp.size],
            )
            return False
        head, _ = self._lock_head(cur, cp.origin)
        view = expected if expected is not None else self._views.get(cp.origin)
        if cp.size > head and view is not None and view != head:
            raise WriterConflictError(
                f"{cp.origin}: another writer moved the latest checkpoint from {view} to "
                f"{head} while this one proved {cp.size} consistent with {view}; "
                "reread the latest checkpoint and prove consistency with it",
                origin=cp.origin,
                expected_size=view,
                found_size=head,
                new_size=cp.size,
                new=cp.note.decode("utf-8", "replace"),
            )
        cur.execute(
            "INSERT INTO checkpoints VALUES (%s, %s, %s, %s, %s, %s)",
            [cp.origin, cp.size, cp.root_hash, cp.note, cp.first_seen or now, cp.last_seen or now],
        )
        if cp.size > head:
            cur.execute(
                "UPDATE heads SET checkpoint_size = %s, updated_at = now() "
                "WHERE origin = %s AND checkpoint_size = %s",
                [cp.size, cp.origin, head],
            )
            self._views[cp.origin] = cp.size
        return True

    def add_checkpoint(
        self, checkpoint: StoredCheckpoint, *, expected_size: int | None = None
    ) -> bool:
        """Store a verified checkpoint; return True if it was new (else ``last_seen`` is updated).

        A new checkpoint larger than the head moves the head by compare-and-swap
        from ``expected_size``: by default the size this store last read with
        :meth:`latest_checkpoint` (the one consistency was proved from). A
        store that never read the head moves it unconditionally.

        Raises:
            DivergenceError: a different root is stored for the same origin and size.
            WriterConflictError: another writer moved the head since it was read.
        """
        with self.transaction() as cur:
            return self._add_checkpoint(cur, checkpoint, expected_size)

    def _checkpoints(self, where: str, params: list[Any], tail: str = "") -> list[StoredCheckpoint]:
        rows = self._fetch(
            "SELECT origin, size, root_hash, note, first_seen, last_seen "
            f"FROM checkpoints WHERE {where} {tail}",
            params,
        )
        return [
            StoredCheckpoint(r[0], int(r[1]), bytes(r[2]), bytes(r[3]), r[4], r[5]) for r in rows
        ]

    def latest_checkpoint(self, origin: str) -> StoredCheckpoint | None:
        """The largest stored checkpoint of ``origin``, if any; remembered as this writer's view."""
        found = self._checkpoints("origin = %s", [origin], "ORDER BY size DESC LIMIT 1")
        self._views[origin] = found[0].size if found else 0
        return found[0] if found else None

    def checkpoint(self, origin: str, size: int) -> StoredCheckpoint | None:
        """The stored checkpoint of ``origin`` at ``size``, if any."""
        found = self._checkpoints("origin = %s AND size = %s", [origin, size])
        return found[0] if found else None

    def checkpoints(self, origin: str) -> list[StoredCheckpoint]:
        """Every stored checkpoint of ``origin``, smallest first."""
        return self._checkpoints("origin = %s", [origin], "ORDER BY size")

    # -- sightings and frontiers (the sync service) ----------------------------

    def _record_sighting(self, cur: psycopg.Cursor[Any], cp: StoredCheckpoint, source: str) -> None:
        now = _now()
        cur.execute(
            "INSERT INTO checkpoint_sightings VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (origin, size, source) DO UPDATE SET last_seen = excluded.last_seen",
            [cp.origin, cp.size, cp.root_hash, source, now, now],
        )

    def record_sighting(self, checkpoint: StoredCheckpoint, *, source: str) -> None:
        """Record that ``source`` (a log URL, mirror or witness) served ``checkpoint``."""
        with self.transaction() as cur:
            self._record_sighting(cur, checkpoint, source)

    def sightings(self, origin: str) -> list[tuple[int, bytes, str, _dt.datetime, _dt.datetime]]:
        """Every ``(size, root, source, first_seen, last_seen)`` recorded for ``origin``."""
        rows = self._fetch(
            "SELECT size, root_hash, source, first_seen, last_seen "
            "FROM checkpoint_sightings WHERE origin = %s ORDER BY size, source",
            [origin],
        )
        return [(int(r[0]), bytes(r[1]), str(r[2]), r[3], r[4]) for r in rows]

    def advance_frontier(self, checkpoint: StoredCheckpoint, *, start: int, source: str) -> None:
        """Record ``checkpoint`` as fully processed, in one transaction (as DuckDBStore's).

        The origin's head row is locked first, so two monitors advancing one
        origin take turns: the second sees the first's frontier and may not
        move it back.

        Raises:
            StoreError: entries are missing, or the frontier would move back.
            DivergenceError: the checkpoint contradicts a stored one.
        """
        origin = checkpoint.origin
        with self.transaction() as cur:
            self._lock_head(cur, origin)
            if start < checkpoint.size:
                cur.execute(
                    "SELECT count(*) FROM verified_ranges "
                    "WHERE origin = %s AND start_index <= %s AND end_index >= %s",
                    [origin, start, checkpoint.size],
                )
                row = cur.fetchone()
                if not row or not row[0]:
                    raise StoreError(
                        f"{origin}: entries [{start}, {checkpoint.size}) are not all stored"
                    )
            cur.execute("SELECT size FROM frontiers WHERE origin = %s", [origin])
            old = cur.fetchone()
            if old is not None and int(old[0]) > checkpoint.size:
                raise StoreError(
                    f"{origin}: frontier {old[0]} cannot move back to {checkpoint.size}"
                )
            # The head was locked above: no compare-and-swap against this store's view.
            self._add_checkpoint(cur, checkpoint, self._lock_head(cur, origin)[0])
            self._record_sighting(cur, checkpoint, source)
            cur.execute(
                "INSERT INTO frontiers VALUES (%s, %s, %s, %s, %s) ON CONFLICT (origin) "
                "DO UPDATE SET size = excluded.size, root_hash = excluded.root_hash, "
                "updated_at = excluded.updated_at",
                [origin, start, checkpoint.size, checkpoint.root_hash, _now()],
            )

    def frontier(self, origin: str) -> tuple[int, StoredCheckpoint] | None:
        """``(start, checkpoint)``: where the sync of ``origin`` began, its last full checkpoint."""
        rows = self._fetch(
            "SELECT f.start_index, c.origin, c.size, c.root_hash, c.note, c.first_seen, "
            "c.last_seen FROM frontiers f JOIN checkpoints c "
            "ON c.origin = f.origin AND c.size = f.size WHERE f.origin = %s",
            [origin],
        )
        if not rows:
            return None
        r = rows[0]
        return int(r[0]), StoredCheckpoint(r[1], int(r[2]), bytes(r[3]), bytes(r[4]), r[5], r[6])


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(info.items()))
