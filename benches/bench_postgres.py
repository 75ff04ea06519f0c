"""PostgreSQL ingestion (rekorkit.store.postgres): 700-byte verified entries per second.

A real PostgreSQL 16 (the ``pgserver`` wheel, started by the tests' helper)
on loopback, default settings: ``fsync`` and ``synchronous_commit`` on, so
every timed load is durable when its transaction commits.

* baseline: the same rows through psycopg's ``executemany`` of one
  parameterized ``INSERT`` per row, in one transaction (what a Python
  monitor writes without thinking about bulk loads);
* :meth:`PostgresStore.commit_entries`: the store's path, binary ``COPY``
  encoded column-wise from Arrow, plus the range bookkeeping, all in one
  transaction, into the indexed ``entries`` table;
* the same ``COPY`` into an index-free copy of the table: where the time goes
  (heap + WAL alone vs. the unique and leaf-hash index maintenance).

Each round starts from empty tables (``TRUNCATE`` inside the timed call, the
same for every case: it costs milliseconds).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from conftest import measure, scaled
from rekorkit.store.duckdb import ENTRY_SCHEMA, entry_batch
from rekorkit.store.postgres import PostgresStore, copy_into

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg import start_postgres

ENTRY = 700
ORIGIN = "bench.rekorkit.example/pg"
N = scaled(200_000, 2_000)
_TABLES = "entries, verified_ranges, entry_commits, heads"
_INSERT = (
    f"INSERT INTO entries ({', '.join(ENTRY_SCHEMA.names)}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with start_postgres() as server:
        url = server.create_database()
        PostgresStore(url).close()  # migrate once, outside the timings
        yield url


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    """``N`` Rekor-shaped entries: 700 random bytes each, with their RFC 9162 leaf hashes."""
    raw = np.random.default_rng(17).integers(0, 256, (N, ENTRY), dtype=np.uint8)
    offsets = np.arange(0, (N + 1) * ENTRY, ENTRY, dtype=np.int32)
    bodies = pa.BinaryArray.from_buffers(
        pa.binary(), N, [None, pa.py_buffer(offsets), pa.py_buffer(raw.tobytes())]
    )
    leaves = b"".join(hashlib.sha256(b"\x00" + row.tobytes()).digest() for row in raw)
    batch = entry_batch(ORIGIN, 0, bodies, leaves, checkpoint_size=N)
    return pa.Table.from_batches([batch])


def _stored(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as con:
        row = con.execute("SELECT count(*), count(DISTINCT log_index) FROM entries").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_pg_ingest_executemany_baseline(benchmark: Any, pg_url: str, rows: pa.Table) -> None:
    tuples = [tuple(r.values()) for r in rows.to_pylist()]  # built once, not timed

    def once() -> None:
        with psycopg.connect(pg_url) as con, con.cursor() as cur:
            cur.execute(f"TRUNCATE {_TABLES}")
            cur.executemany(_INSERT, tuples)

    measure(
        benchmark,
        once,
        ops=N,
        nbytes=N * ENTRY,
        rounds=1,
        note="psycopg executemany, one INSERT per row, one transaction",
    )
    assert _stored(pg_url) == (N, N)


def test_pg_ingest_copy(benchmark: Any, pg_url: str, rows: pa.Table) -> None:
    def once() -> int:
        with PostgresStore(pg_url) as store:
            with store.transaction() as cur:
                cur.execute(f"TRUNCATE {_TABLES}")
            return store.commit_entries(ORIGIN, [rows], start=0, end=N)

    stored = measure(
        benchmark,
        once,
        ops=N,
        nbytes=N * ENTRY,
        rounds=3,
        baseline="test_pg_ingest_executemany_baseline",
        note="PostgresStore.commit_entries: binary COPY from Arrow, indexed table, durable",
    )
    assert stored == N and _stored(pg_url) == (N, N)


def test_pg_ingest_copy_no_indexes(benchmark: Any, pg_url: str, rows: pa.Table) -> None:
    def once() -> int:
        with psycopg.connect(pg_url) as con, con.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bare; CREATE TABLE bare (LIKE entries)")
            copy_into(cur, "bare", rows)
            cur.execute("SELECT count(*) FROM bare")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    stored = measure(
        benchmark,
        once,
        ops=N,
        nbytes=N * ENTRY,
        rounds=3,
        baseline="test_pg_ingest_executemany_baseline",
        note="the same COPY into an index-free table: heap and WAL only (diagnostic)",
    )
    assert stored == N
