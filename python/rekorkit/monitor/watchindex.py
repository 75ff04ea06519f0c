"""The watch index: every stored entry's verifier and digest fields, in their own tables.

Reading the fields out of the bodies is the costly part of matching a
watchlist (a JSON parse per body, :mod:`rekorkit.monitor.bodyfields`); it is
done once per stored entry, and kept beside the entries in the same store
(a DuckDB file or a shared PostgreSQL database), in tables this module owns:

* ``watch_verifiers``: each distinct verifier field, keyed by the SHA-256 of
  its exact bytes (two certificates that differ anywhere have two keys);
* ``watch_entry_verifiers``: ``(origin, log_index, vkey)``, one row per
  verifier of an entry (a DSSE envelope signed twice has two);
* ``watch_entry_digests``: ``(origin, log_index, digest)`` as stored in the
  body (hex in 0.0.1 kinds, base64 in 0.0.2);
* ``watch_index_progress``: which entries are indexed (DuckDB: the first
  entries ``rowid`` not indexed yet; PostgreSQL: the entry commits indexed).

The index rows and the progress move in one transaction. Back-scanning the
history for a new watch item is then a join over these columns: each
distinct verifier is judged once, in Python, and the entries carrying the
matching ones come out of one SQL query. Both stores share everything but
the SQL: the index rows come from one function over Arrow columns, and the
verifiers are judged and the matches assembled by one code path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from rekorkit.errors import StoreError
from rekorkit.monitor.bodyfields import body_fields
from rekorkit.store.duckdb import DuckDBStore

if TYPE_CHECKING:
    import psycopg

    from rekorkit.store.postgres import PostgresStore


class Judge(Protocol):
    """What the index asks of a watchlist (:class:`~rekorkit.monitor.Watchlist` is one)."""

    digests: frozenset[str]

    def __bool__(self) -> bool: ...

    def verdicts(self, blobs: Iterable[bytes]) -> list[Any]:
        """Each verifier field parsed (``None`` when it is no certificate or key)."""
        ...

    def verifier_hits(self, v: Any) -> list[tuple[str, str]]:
        """``(watch id, value)`` for every watch item a parsed verifier matches."""
        ...

    def digest_forms(self) -> pa.Array:
        """The watched digests as bodies spell them."""
        ...

    def digest_hex(self, text: str) -> str:
        """The watched digest a body's digest field spells."""
        ...


# One match: (log index, watch id, leaf hash, matched value, fingerprint).
IndexMatch = tuple[int, str, bytes, str, str | None]

__all__ = [
    "INDEX_SLICE",
    "PG_INDEX_SLICE",
    "IndexMatch",
    "Judge",
    "refresh_watch_index",
    "scan_watch_index",
]

# Entries read back per indexing step (bounded memory).
INDEX_SLICE = 262_144
# The same over PostgreSQL, where the bodies cross the wire as Python objects first.
PG_INDEX_SLICE = 65_536

# A judged verifier and a watch item it matches: (vkey, watch id, value, fingerprint).
_Hit = tuple[str, str, str, str | None]
# An entry carrying a matching verifier: (log index, leaf hash, watch id, value, fingerprint).
_VerifierRow = tuple[int, bytes, str, str, str | None]
# An entry carrying a watched digest: (log index, leaf hash, digest as spelled, its vkeys).
_DigestRow = tuple[int, bytes, str, list[str]]


# -- shared by both stores: index rows from bodies, judging, assembling matches ------


@dataclass(frozen=True, slots=True)
class _IndexRows:
    """The index rows of a batch of entries, as Arrow tables named like their columns."""

    verifiers: pa.Table  # vkey (string), field (binary): the batch's distinct verifiers
    entry_verifiers: pa.Table  # origin, log_index, vkey
    entry_digests: pa.Table  # origin, log_index, digest (binary)


def _index_rows(entries: pa.Table) -> _IndexRows:
    """The index rows of ``entries`` (``origin``, ``log_index``, ``body`` columns)."""
    fields = body_fields(entries.column("body"))
    origins, indices = entries.column("origin"), entries.column("log_index")
    # Few distinct verifiers among many entries: hash each distinct one once.
    encoded = pc.dictionary_encode(fields.verifiers)
    distinct = encoded.dictionary.to_pylist()
    keys = pa.array([hashlib.sha256(v).hexdigest() for v in distinct], pa.string())
    return _IndexRows(
        pa.table({"vkey": keys, "field": encoded.dictionary.cast(pa.binary())}),
        pa.table(
            {
                "origin": origins.take(pa.array(fields.verifier_rows)),
                "log_index": indices.take(pa.array(fields.verifier_rows)),
                "vkey": keys.take(encoded.indices),
            }
        ),
        pa.table(
            {
                "origin": origins.take(pa.array(fields.digest_rows)),
                "log_index": indices.take(pa.array(fields.digest_rows)),
                "digest": fields.digests.cast(pa.binary()),
            }
        ),
    )


def _judge(
    watchlist: Judge, distinct: Sequence[tuple[str, bytes]]
) -> tuple[dict[str, str | None], list[_Hit]]:
    """Each distinct ``(vkey, field)`` judged once: the fingerprints, and the watch hits."""
    keys = [k for k, _ in distinct]
    verdicts = watchlist.verdicts([f for _, f in distinct])
    prints = {k: v.fingerprint if v else None for k, v in zip(keys, verdicts, strict=True)}
    hits = [
        (k, watch, value, prints[k])
        for k, v in zip(keys, verdicts, strict=True)
        if v is not None
        for watch, value in watchlist.verifier_hits(v)
    ]
    return prints, hits


def _assemble(
    watchlist: Judge,
    prints: dict[str, str | None],
    verifier_rows: Iterable[_VerifierRow],
    digest_rows: Iterable[_DigestRow],
) -> list[IndexMatch]:
    """One match per (entry, watch item), in index order, from what the queries found."""
    found: dict[tuple[int, str], tuple[bytes, str, str | None]] = {}
    # Sorted: an entry whose two signers both match one item reports the same one
    # whatever order the database returned the rows in.
    for index, leaf, watch, value, fp in sorted(verifier_rows, key=lambda r: (*r[:4], r[4] or "")):
        found.setdefault((index, watch), (leaf, value, fp))
    for index, leaf, digest, vkeys in digest_rows:
        hexd = watchlist.digest_hex(digest)
        fp = min((p for k in vkeys if (p := prints.get(k))), default=None)  # evidence: one signer
        found.setdefault((index, f"digest:{hexd}"), (leaf, hexd, fp))
    return sorted((index, watch, *rest) for (index, watch), rest in found.items())


class _Reader(Protocol):
    """The store-specific queries of a scan, in one read transaction."""

    def verifiers(self) -> list[tuple[str, bytes]]:
        """Every distinct indexed verifier: ``(vkey, field)``."""
        ...

    def verifier_matches(
        self, hits: list[_Hit], origin: str, start: int, end: int
    ) -> list[_VerifierRow]:
        """The entries in ``[start, end)`` of ``origin`` carrying a verifier of ``hits``."""
        ...

    def digest_matches(
        self, forms: pa.Array, origin: str, start: int, end: int
    ) -> list[_DigestRow]:
        """The entries in ``[start, end)`` of ``origin`` whose digest field is in ``forms``."""
        ...


def refresh_watch_index(store: DuckDBStore | PostgresStore) -> int:
    """Index the fields of the entries stored since the last refresh; return how many.

    One transaction: the index rows and its progress are stored together. On
    PostgreSQL, refreshers of one database (other monitors) take turns.

    Raises:
        TypeError: ``store`` is neither a DuckDB nor a PostgreSQL store.
        StoreError: the database failed.
    """
    if isinstance(store, DuckDBStore):
        return _refresh_duckdb(store)
    return _refresh_postgres(_postgres(store))


def scan_watch_index(
    watchlist: Judge, store: DuckDBStore | PostgresStore, origin: str, start: int, end: int
) -> list[IndexMatch]:
    """The matches of ``watchlist`` among the stored entries ``[start, end)`` of ``origin``.

    Brings the index up to date first; then judges each distinct verifier
    once and finds the entries that carry a matching one, or a watched
    digest, with one SQL query each.

    Raises:
        TypeError: ``store`` is neither a DuckDB nor a PostgreSQL store.
        StoreError: the database failed.
    """
    refresh_watch_index(store)
    if not watchlist:
        return []
    with _reader(store) as read:
        prints, hits = _judge(watchlist, read.verifiers())
        verifier_rows = read.verifier_matches(hits, origin, start, end) if hits else []
        digest_rows = (
            read.digest_matches(watchlist.digest_forms(), origin, start, end)
            if watchlist.digests
            else []
        )
    return _assemble(watchlist, prints, verifier_rows, digest_rows)


@contextmanager
def _reader(store: DuckDBStore | PostgresStore) -> Iterator[_Reader]:
    if isinstance(store, DuckDBStore):
        with store.transaction() as con:
            yield _DuckDBReader(con)
        return
    with _postgres(store).transaction() as cur, cur.connection.cursor(binary=True) as read:
        # One snapshot for the verifier list and both joins.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield _PostgresReader(read)


def _postgres(store: object) -> PostgresStore:
    # Imported here: psycopg is an optional dependency, needed only with a PostgreSQL store.
    from rekorkit.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        raise TypeError(f"the watch index needs a DuckDBStore or a PostgresStore, not {store!r}")
    return store


# -- DuckDB ------------------------------------------------------------------------

_DDL = [
    "CREATE TABLE IF NOT EXISTS watch_verifiers (vkey VARCHAR PRIMARY KEY, field VARCHAR NOT NULL)",
    """CREATE TABLE IF NOT EXISTS watch_entry_verifiers (
        origin VARCHAR NOT NULL, log_index BIGINT NOT NULL, vkey VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS watch_entry_digests (
        origin VARCHAR NOT NULL, log_index BIGINT NOT NULL, digest VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS watch_index_progress (
        id INTEGER PRIMARY KEY, next_rowid BIGINT NOT NULL)""",
]


def _index_slice(con: Any, low: int, high: int) -> None:
    rows = con.sql(
        "SELECT origin, log_index, body FROM entries WHERE rowid >= ? AND rowid < ?",
        params=[low, high],
    ).to_arrow_table()
    if rows.num_rows == 0:
        return
    index = _index_rows(rows)
    known = index.verifiers.set_column(1, "field", index.verifiers["field"].cast(pa.string()))
    digests = index.entry_digests.set_column(
        2, "digest", index.entry_digests["digest"].cast(pa.string())
    )
    con.register("_watch_k", known)
    con.register("_watch_v", index.entry_verifiers)
    con.register("_watch_d", digests)
    try:
        con.execute("INSERT INTO watch_verifiers SELECT * FROM _watch_k ON CONFLICT DO NOTHING")
        con.execute(
            "INSERT INTO watch_entry_verifiers SELECT origin, log_index, vkey FROM _watch_v"
        )
        con.execute(
            "INSERT INTO watch_entry_digests SELECT origin, log_index, digest FROM _watch_d"
        )
    finally:
        con.unregister("_watch_k")
        con.unregister("_watch_v")
        con.unregister("_watch_d")


def _refresh_duckdb(store: DuckDBStore) -> int:
    with store.transaction() as con:
        for ddl in _DDL:
            con.execute(ddl)
        # fetchall: a relation query is refused while a result is unread.
        done = con.execute("SELECT next_rowid FROM watch_index_progress WHERE id = 0").fetchall()
        low = int(done[0][0]) if done else 0
        top = con.execute("SELECT max(rowid) FROM entries").fetchall()[0][0]
        if top is None or int(top) < low:
            return 0
        high = int(top) + 1
        for a in range(low, high, INDEX_SLICE):
            _index_slice(con, a, min(high, a + INDEX_SLICE))
        con.execute(
            "INSERT INTO watch_index_progress VALUES (0, ?) ON CONFLICT DO UPDATE "
            "SET next_rowid = excluded.next_rowid",
            [high],
        )
        return high - low


_RANGE = "w.origin = ? AND w.log_index >= ? AND w.log_index < ?"


class _DuckDBReader:
    def __init__(self, con: Any) -> None:
        self.con = con

    def verifiers(self) -> list[tuple[str, bytes]]:
        rows = self.con.execute("SELECT vkey, field FROM watch_verifiers").fetchall()
        return [(str(k), str(f).encode()) for k, f in rows]

    def verifier_matches(
        self, hits: list[_Hit], origin: str, start: int, end: int
    ) -> list[_VerifierRow]:
        names = ("vkey", "watch", "value", "fp")
        table = pa.table({name: [h[i] for h in hits] for i, name in enumerate(names)})
        self.con.register("_watch_hits", table)
        try:
            rows = self.con.execute(
                "SELECT w.log_index, e.leaf_hash, h.watch, h.value, h.fp "
                "FROM watch_entry_verifiers w JOIN _watch_hits h ON w.vkey = h.vkey "
                "JOIN entries e ON e.origin = w.origin AND e.log_index = w.log_index "
                f"WHERE {_RANGE}",
                [origin, start, end],
            ).fetchall()
        finally:
            self.con.unregister("_watch_hits")
        return [(int(i), bytes(leaf), str(w), str(v), fp) for i, leaf, w, v, fp in rows]

    def digest_matches(
        self, forms: pa.Array, origin: str, start: int, end: int
    ) -> list[_DigestRow]:
        self.con.register("_watch_digests", pa.table({"digest": forms}))
        try:
            rows = self.con.execute(
                "SELECT w.log_index, e.leaf_hash, w.digest, "
                "(SELECT list(v.vkey) FROM watch_entry_verifiers v "
                " WHERE v.origin = w.origin AND v.log_index = w.log_index) "
                "FROM watch_entry_digests w JOIN entries e "
                "ON e.origin = w.origin AND e.log_index = w.log_index "
                f"WHERE {_RANGE} AND w.digest IN (SELECT digest FROM _watch_digests)",
                [origin, start, end],
            ).fetchall()
        finally:
            self.con.unregister("_watch_digests")
        return [
            (int(i), bytes(leaf), str(d), [str(k) for k in vkeys or ()])
            for i, leaf, d, vkeys in rows
        ]


# -- PostgreSQL ----------------------------------------------------------------------

# Versioned like the store's own schema (apply_migrations, under its advisory lock),
# in a table of its own: processes starting together create the tables once.
# PostgreSQL has no rowid, and entries committed by concurrent writers become
# visible out of order, so a high-water mark over any sequence could pass a commit
# that became visible later. Progress is the set of entry commits indexed instead
# (``entry_commits`` has a row for every commit of entries, staged ones included).
# Fields and digests are bytea: a JSON string may hold U+0000, which text cannot,
# and a body is any bytes its author chose. Digests are indexed by their SHA-256:
# a btree refuses keys over a third of a page and a digest field has no length
# limit (a hash index takes any length but is several times slower to load).
_PG_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE watch_verifiers (vkey text PRIMARY KEY, field bytea NOT NULL);
        CREATE TABLE watch_entry_verifiers (
            origin text NOT NULL, log_index bigint NOT NULL, vkey text NOT NULL);
        CREATE INDEX watch_entry_verifiers_vkey ON watch_entry_verifiers (vkey, origin, log_index);
        CREATE INDEX watch_entry_verifiers_entry ON watch_entry_verifiers (origin, log_index);
        CREATE TABLE watch_entry_digests (
            origin text NOT NULL, log_index bigint NOT NULL, digest bytea NOT NULL);
        CREATE INDEX watch_entry_digests_digest ON watch_entry_digests (sha256(digest));
        CREATE TABLE watch_index_progress (
            origin text NOT NULL, start_index bigint NOT NULL, end_index bigint NOT NULL,
            PRIMARY KEY (origin, start_index));
        """,
    ),
)

# Refreshers of one database take turns on this transaction-scoped advisory lock.
# ON CONFLICT DO NOTHING alone could not keep the entry rows single: they have no
# natural key (a DSSE envelope signed twice by one key has two equal rows), and two
# refreshers that both read "commit X not indexed" would both copy its rows. Under
# the lock, the second refresher's query (READ COMMITTED: a fresh snapshot per
# statement) sees the first one's rows and progress, committed together, and finds
# nothing left to do; a refresher that dies rolls back and releases the lock, so
# no progress is lost or recorded without its rows.
_WATCH_LOCK = 0x726B7769  # pg_advisory_xact_lock key: "rkwi"
_PG_TABLES = (
    "watch_verifiers",
    "watch_entry_verifiers",
    "watch_entry_digests",
    "watch_index_progress",
)

_PENDING_COMMITS = """
    SELECT origin, start_index, end_index FROM entry_commits c
    WHERE NOT EXISTS (SELECT 1 FROM watch_index_progress p
                      WHERE p.origin = c.origin AND p.start_index = c.start_index)
    ORDER BY origin, start_index"""

_BODIES = """
    SELECT e.origin, e.log_index, e.body
    FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS c(origin, lo, hi)
    JOIN entries e ON e.origin = c.origin AND e.log_index >= c.lo AND e.log_index < c.hi"""

_BODY_SCHEMA = pa.schema(
    [("origin", pa.string()), ("log_index", pa.int64()), ("body", pa.binary())]
)


def _slices(
    commits: Sequence[tuple[str, int, int]], size: int
) -> Iterator[list[tuple[str, int, int]]]:
    """The ranges of ``commits``, grouped (and split) into parts of at most ``size`` entries."""
    part: list[tuple[str, int, int]] = []
    room = size
    for origin, lo, hi in commits:
        while lo < hi:
            take = min(hi - lo, room)
            part.append((origin, lo, lo + take))
            lo, room = lo + take, room - take
            if room == 0:
                yield part
                part, room = [], size
    if part:
        yield part


def _copy_index_rows(cur: psycopg.Cursor[Any], index: _IndexRows) -> None:
    from rekorkit.store.postgres import copy_into

    known = index.verifiers
    if known.num_rows:
        # Under the lock no one else adds verifiers: copy the ones not stored yet.
        cur.execute(
            "SELECT vkey FROM watch_verifiers WHERE vkey = ANY(%s)",
            [known.column("vkey").to_pylist()],
        )
        have = pa.array([str(r[0]) for r in cur.fetchall()], pa.string())
        known = known.filter(pc.invert(pc.is_in(known.column("vkey"), value_set=have)))
    for target, rows in (
        ("watch_verifiers", known),
        ("watch_entry_verifiers", index.entry_verifiers),
        ("watch_entry_digests", index.entry_digests),
    ):
        if rows.num_rows:
            copy_into(cur, target, rows)


def _refresh_postgres(store: PostgresStore) -> int:
    from rekorkit.store.postgres import apply_migrations, copy_into, fetch_table

    # Its own short transaction: the migration lock is not held while indexing.
    with store.transaction() as cur:
        version = apply_migrations(cur, "watch_index_migrations", _PG_MIGRATIONS)
    if version != _PG_MIGRATIONS[-1][0]:
        raise StoreError(f"watch index schema version {version} is not supported")
    with store.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_WATCH_LOCK])
        cur.execute(_PENDING_COMMITS)
        commits = [(str(o), int(s), int(e)) for o, s, e in cur.fetchall()]
        for part in _slices(commits, PG_INDEX_SLICE):
            params = [list(column) for column in zip(*part, strict=True)]
            entries = fetch_table(cur, _BODIES, params, _BODY_SCHEMA)
            if entries.num_rows:
                _copy_index_rows(cur, _index_rows(entries))
        if commits:
            done = zip(*commits, strict=True)
            names = ("origin", "start_index", "end_index")
            copy_into(cur, "watch_index_progress", pa.table(dict(zip(names, done, strict=True))))
        total = sum(end - start for _, start, end in commits)
        if total >= PG_INDEX_SLICE:
            # A bulk load: statistics now, not at autovacuum's next pass, or the scans'
            # joins are planned blind (a table scan hashing every digest, not an index).
            cur.execute(f"ANALYZE {', '.join(_PG_TABLES)}")
        return total


_PG_RANGE = "w.origin = %s AND w.log_index >= %s AND w.log_index < %s"


class _PostgresReader:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur  # a binary cursor: bytea arrives as is, not as hex text

    def verifiers(self) -> list[tuple[str, bytes]]:
        self.cur.execute("SELECT vkey, field FROM watch_verifiers")
        return [(str(k), bytes(f)) for k, f in self.cur.fetchall()]

    def verifier_matches(
        self, hits: list[_Hit], origin: str, start: int, end: int
    ) -> list[_VerifierRow]:
        self.cur.execute(
            "SELECT w.log_index, e.leaf_hash, h.watch, h.value, h.fp "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS h(vkey, watch, value, fp) "
            "JOIN watch_entry_verifiers w ON w.vkey = h.vkey "
            "JOIN entries e ON e.origin = w.origin AND e.log_index = w.log_index "
            f"WHERE {_PG_RANGE}",
            [*(list(column) for column in zip(*hits, strict=True)), origin, start, end],
        )
        return [(int(i), bytes(leaf), str(w), str(v), fp) for i, leaf, w, v, fp in self.cur]

    def digest_matches(
        self, forms: pa.Array, origin: str, start: int, end: int
    ) -> list[_DigestRow]:
        self.cur.execute(
            "SELECT w.log_index, e.leaf_hash, w.digest, "
            "ARRAY(SELECT v.vkey FROM watch_entry_verifiers v "
            "      WHERE v.origin = w.origin AND v.log_index = w.log_index) "
            "FROM unnest(%s::bytea[]) AS f(digest) "
            "JOIN watch_entry_digests w "
            "ON sha256(w.digest) = sha256(f.digest) AND w.digest = f.digest "
            "JOIN entries e ON e.origin = w.origin AND e.log_index = w.log_index "
            f"WHERE {_PG_RANGE}",
            [forms.cast(pa.binary()).to_pylist(), origin, start, end],
        )
        # A matching field equals a watched form, so it is ASCII.
        return [
            (int(i), bytes(leaf), bytes(d).decode(), [str(k) for k in vkeys])
            for i, leaf, d, vkeys in self.cur
        ]
