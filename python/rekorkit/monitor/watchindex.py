"""The watch index: every stored entry's verifier and digest fields, in their own tables.

Reading the fields out of the bodies is the costly part of matching a
watchlist (a JSON parse per body, :mod:`rekorkit.monitor.bodyfields`); it is
done once per stored entry, and kept beside the entries in the same DuckDB
file, in tables this module owns:

* ``watch_verifiers``: each distinct verifier field, keyed by the SHA-256 of
  its exact bytes (two certificates that differ anywhere have two keys);
* ``watch_entry_verifiers``: ``(origin, log_index, vkey)``, one row per
  verifier of an entry (a DSSE envelope signed twice has two);
* ``watch_entry_digests``: ``(origin, log_index, digest)`` as stored in the
  body (hex in 0.0.1 kinds, base64 in 0.0.2);
* ``watch_index_progress``: the first entries ``rowid`` not indexed yet.

The index rows and the progress move in one transaction. Back-scanning the
history for a new watch item is then a join over these columns: each
distinct verifier is judged once, in Python, and the entries carrying the
matching ones come out of one SQL query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from rekorkit.monitor.bodyfields import body_fields
from rekorkit.store.duckdb import DuckDBStore


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

__all__ = ["INDEX_SLICE", "IndexMatch", "Judge", "refresh_watch_index", "scan_watch_index"]

# Entries read back per indexing step (bounded memory).
INDEX_SLICE = 262_144

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
    fields = body_fields(rows.column("body"))
    origins, indices = rows.column("origin"), rows.column("log_index")
    # Few distinct verifiers among many entries: hash each distinct one once.
    encoded = pc.dictionary_encode(fields.verifiers)
    distinct = encoded.dictionary.to_pylist()
    keys = pa.array([hashlib.sha256(v).hexdigest() for v in distinct], pa.string())
    known = pa.table({"vkey": keys, "field": encoded.dictionary.cast(pa.string())})
    verifiers = pa.table(
        {
            "origin": origins.take(pa.array(fields.verifier_rows)),
            "log_index": indices.take(pa.array(fields.verifier_rows)),
            "vkey": keys.take(encoded.indices),
        }
    )
    digests = pa.table(
        {
            "origin": origins.take(pa.array(fields.digest_rows)),
            "log_index": indices.take(pa.array(fields.digest_rows)),
            "digest": fields.digests.cast(pa.string()),
        }
    )
    con.register("_watch_k", known)
    con.register("_watch_v", verifiers)
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


def refresh_watch_index(store: DuckDBStore) -> int:
    """Index the fields of the entries stored since the last refresh; return how many.

    One transaction: the index rows and its progress are stored together.
    """
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


def scan_watch_index(
    watchlist: Judge, store: DuckDBStore, origin: str, start: int, end: int
) -> list[IndexMatch]:
    """The matches of ``watchlist`` among the stored entries ``[start, end)`` of ``origin``.

    Brings the index up to date first; then judges each distinct verifier
    once and finds the entries that carry a matching one, or a watched
    digest, with one SQL query each.
    """
    refresh_watch_index(store)
    if not watchlist:
        return []
    found: dict[tuple[int, str], tuple[bytes, str, str | None]] = {}
    with store.transaction() as con:
        distinct = con.execute("SELECT vkey, field FROM watch_verifiers").fetchall()
        keys = [str(k) for k, _ in distinct]
        verdicts = watchlist.verdicts([str(f).encode() for _, f in distinct])
        prints = {k: v.fingerprint if v else None for k, v in zip(keys, verdicts, strict=True)}
        hits = [
            (k, watch, value, prints[k])
            for k, v in zip(keys, verdicts, strict=True)
            if v is not None
            for watch, value in watchlist.verifier_hits(v)
        ]
        where = "w.origin = ? AND w.log_index >= ? AND w.log_index < ?"
        if hits:
            table = pa.table(
                {
                    name: [h[i] for h in hits]
                    for i, name in enumerate(("vkey", "watch", "value", "fp"))
                }
            )
            con.register("_watch_hits", table)
            try:
                rows = con.execute(
                    "SELECT w.log_index, e.leaf_hash, h.watch, h.value, h.fp "
                    "FROM watch_entry_verifiers w JOIN _watch_hits h ON w.vkey = h.vkey "
                    "JOIN entries e ON e.origin = w.origin AND e.log_index = w.log_index "
                    f"WHERE {where}",
                    [origin, start, end],
                ).fetchall()
            finally:
                con.unregister("_watch_hits")
            for index, leaf, watch, value, fp in rows:
                found.setdefault((int(index), str(watch)), (bytes(leaf), str(value), fp))
        if watchlist.digests:
            forms = pa.table({"digest": watchlist.digest_forms()})
            con.register("_watch_digests", forms)
            try:
                rows = con.execute(
                    "SELECT w.log_index, e.leaf_hash, w.digest, "
                    "(SELECT list(v.vkey) FROM watch_entry_verifiers v "
                    " WHERE v.origin = w.origin AND v.log_index = w.log_index) "
                    "FROM watch_entry_digests w JOIN entries e "
                    "ON e.origin = w.origin AND e.log_index = w.log_index "
                    f"WHERE {where} AND w.digest IN (SELECT digest FROM _watch_digests)",
                    [origin, start, end],
                ).fetchall()
            finally:
                con.unregister("_watch_digests")
            for index, leaf, digest, vkeys in rows:
                hexd = watchlist.digest_hex(str(digest))
                fp = min((p for k in vkeys or () if (p := prints.get(str(k)))), default=None)
                found.setdefault((int(index), f"digest:{hexd}"), (bytes(leaf), hexd, fp))
    return sorted((index, watch, *rest) for (index, watch), rest in found.items())
