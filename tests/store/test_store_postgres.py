"""PostgresStore beyond the shared contract: compare-and-swap heads, racing writers,
retries that never duplicate, staged commits, migrations and a server restart."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import threading

import psycopg
import pytest
from concurrently import in_threads
from pg import PostgresServer, pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit.errors import StoreError, WriterConflictError
from rekorkit.store.postgres import MIGRATIONS, PostgresStore
from test_store_duckdb import ORIGIN, batch, checkpoint


def test_a_second_writer_with_another_view_fails_loudly(pg_url: str) -> None:
    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        a.add_checkpoint(checkpoint(5))
        assert a.latest_checkpoint(ORIGIN) is not None and b.latest_checkpoint(ORIGIN) is not None
        assert a.add_checkpoint(checkpoint(10, b"\x02" * 32)) is True  # moves 5 -> 10
        with pytest.raises(WriterConflictError) as info:
            b.add_checkpoint(checkpoint(12, b"\x03" * 32))  # b proved 12 from 5, not from 10
        assert info.value.evidence["expected_size"] == 5 and info.value.evidence["found_size"] == 10
        latest = b.latest_checkpoint(ORIGIN)  # b rereads: its view is now 10
        assert latest is not None and latest.size == 10
        assert b.add_checkpoint(checkpoint(12, b"\x03" * 32)) is True
        with pytest.raises(WriterConflictError):
            a.add_checkpoint(checkpoint(20, b"\x04" * 32), expected_size=10)


def test_two_writers_racing_on_one_range_one_wins(pg_url: str) -> None:
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def write(store: PostgresStore) -> None:
        barrier.wait()
        try:
            outcomes.append(
                store.commit_entries(ORIGIN, [batch(0, [b"x"] * 500, 500)], start=0, end=500)
            )
        except WriterConflictError as exc:
            outcomes.append(exc)

    in_threads(write, stores, timeout=30)
    assert sorted(map(type, outcomes), key=str) == sorted([int, WriterConflictError], key=str)
    assert stores[0].count(ORIGIN) == 500 and stores[0].verified_ranges(ORIGIN) == [(0, 500)]
    for s in stores:
        s.close()


def test_staged_rows_commit_only_when_complete_and_retries_replace(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        table = batch(0, [b"s%d" % i for i in range(10)], 10)
        store.stage_entries("run", table)
        store.stage_entries("run", table)  # a retried task: replaced, not duplicated
        with pytest.raises(StoreError, match="staged entries"):
            store.commit_staged(ORIGIN, "run", ranges=[(0, 20)], checkpoint=checkpoint(20))
        assert store.verified_ranges(ORIGIN) == [] and store.latest_checkpoint(ORIGIN) is None
        assert store.commit_staged(ORIGIN, "run", ranges=[(0, 10)], checkpoint=checkpoint(10)) == 10
        assert store.verified_ranges(ORIGIN) == [(0, 10)] and store.count() == 10


def test_schema_is_versioned_and_migrated_once(pg_url: str) -> None:
    with PostgresStore(pg_url) as s:
        assert s.schema_version() == MIGRATIONS[-1][0]
    with PostgresStore(pg_url), psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("INSERT INTO schema_migrations VALUES (99, now())")
    with pytest.raises(StoreError, match="unsupported store schema version 99"):
        PostgresStore(pg_url)


def test_unreachable_server_and_restart_give_clear_errors(
    pg_url: str, pg_server: PostgresServer
) -> None:
    with pytest.raises(StoreError, match="cannot open PostgreSQL store"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/none", connect_timeout=2)
    store = PostgresStore(pg_url)
    try:
        pg_server.restart("immediate")
        with pytest.raises(StoreError):
            store.commit_entries(ORIGIN, [batch(0, [b"y"] * 5, 5)], start=0, end=5)
    finally:
        store.close()
    with PostgresStore(pg_url) as fresh:
        assert fresh.verified_ranges(ORIGIN) == [] and fresh.count() == 0
