"""The monitor (rekorkit.monitor): catch-up rate, watchlist matching, back-scan.

* catch-up: ``RekorSyncService.sync_once`` from an empty store to the head of
  a ``rekorkit serve`` log on loopback, beside the ``rekorkit verify`` engine
  (``verify_tile_log`` into DuckDB) on the same log in the same run: the
  target is a catch-up within 10 % of it;
* watchlist matching over stored columns (an Arrow table in the store's
  schema): :meth:`Watchlist.match` beside a pure-Python loop (``json.loads``
  per body, the verifier parsed once per distinct value, as a careful
  monitor written in Python would);
* back-scan: the service's scan of every stored entry (DuckDB to Arrow, then
  matching; target: 1 M entries in at most 2 s) beside the same pure-Python
  loop over rows fetched from DuckDB;
* the watch index (:mod:`rekorkit.monitor.watchindex`): building it (once
  per stored entry), and back-scanning 1 M entries over it
  (:meth:`Watchlist.scan_store`), beside the same baseline;
* the same back-scan over the watch index of a PostgreSQL store (a real
  PostgreSQL 16 on loopback, the tests' helper; entries and index loaded
  outside the timings), beside the same baseline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from conftest import measure, scaled
from pg import start_postgres
from rekorkit import AsyncTileReader, parse_verifier_key, verify_tile_log
from rekorkit.monitor import (
    IdentityWatch,
    LogConfig,
    MonitorConfig,
    RekorSyncService,
    Watchlist,
)
from rekorkit.monitor.watchindex import refresh_watch_index
from rekorkit.store.duckdb import DuckDBStore, entry_batch
from rekorkit.store.postgres import PostgresStore

N_LOG = scaled(200_000, 3_000)
N_MATCH = scaled(1_000_000, 20_000)

_counter = itertools.count()


@pytest.fixture(scope="module")
def served() -> Any:
    from rekorkit.testing import start_server

    with start_server(seed=N_LOG, subprocess=True, fsync=False, faults=False) as srv:
        yield srv


def _fresh(tmp: Path) -> Path:
    return tmp / f"bench-{next(_counter)}.duckdb"


def test_catchup_verify_engine_baseline(benchmark: Any, served: Any, tmp_path: Path) -> None:
    verifier = parse_verifier_key(served.checkpoint_vkey)

    def run() -> int:
        async def go() -> int:
            async with AsyncTileReader(served.url) as reader:
                with DuckDBStore(_fresh(tmp_path)) as store:
                    report = await verify_tile_log(reader, verifier, store=store)
            return report.stored

        return asyncio.run(go())

    assert measure(benchmark, run, ops=N_LOG, rounds=3, note="rekorkit verify engine") == N_LOG


def test_catchup_monitor(benchmark: Any, served: Any, tmp_path: Path) -> None:
    def run() -> int:
        log = LogConfig("bench", served.url, served.checkpoint_vkey, max_batch=N_LOG)
        cfg = MonitorConfig(str(_fresh(tmp_path)), (log,))

        async def go() -> int:
            service = RekorSyncService(cfg)
            try:
                status = await service.sync_once()
            finally:
                await service.stop()
            return status["bench"].frontier

        return asyncio.run(go())

    result = measure(
        benchmark,
        run,
        ops=N_LOG,
        rounds=3,
        baseline="test_catchup_verify_engine_baseline",
        note="sync_once from empty vs the verify engine, same log (target: within 10 %)",
    )
    assert result == N_LOG


@pytest.fixture(scope="module")
def stored(served: Any, tmp_path_factory: Any) -> tuple[Path, pa.Table, Watchlist, str]:
    """A store of N_MATCH entries (the served log's bodies, repeated) and a watchlist."""
    tmp = tmp_path_factory.mktemp("monitor-bench")
    verifier = parse_verifier_key(served.checkpoint_vkey)

    async def fetch() -> pa.Table:
        async with AsyncTileReader(served.url) as reader:
            with DuckDBStore(tmp / "src.duckdb") as store:
                await verify_tile_log(reader, verifier, store=store)
                return store.entries_table(served.origin, 0, N_LOG)

    src = asyncio.run(fetch())
    reps = -(-N_MATCH // N_LOG)
    bodies = pa.concat_arrays([src.column("body").combine_chunks()] * reps)[:N_MATCH]
    # Leaf hashes are carried, not matched: distinct random ones stand in.
    leaves = np.random.default_rng(1).integers(0, 256, (N_MATCH, 32), dtype=np.uint8)
    batch = entry_batch(served.origin, 0, bodies, leaves, checkpoint_size=N_MATCH)
    table = pa.Table.from_batches([batch])
    db = tmp / "big.duckdb"
    with DuckDBStore(db) as store:
        store.commit_entries(served.origin, [table], start=0, end=N_MATCH)
    # One digest, and identities and a fingerprint that never match.
    digest = _digest_field(json.loads(src.column("body")[5].as_py()))
    watch = Watchlist(
        identities=[
            IdentityWatch("alice@example.com", ("https://accounts.example.com",)),
            IdentityWatch(r".*@evil\.example", regex=True),
        ],
        digests=[digest],
        fingerprints=["00" * 32],
    )
    return db, table, watch, digest


def _verifier_field(body: dict[str, Any]) -> str:
    spec = body["spec"]
    if "signature" in spec:
        return str(spec["signature"]["publicKey"]["content"])
    return str(spec["signatures"][0]["verifier"])


def _digest_field(body: dict[str, Any]) -> str:
    spec = body["spec"]
    h = spec["data"]["hash"] if "data" in spec else spec["payloadHash"]
    return str(h["value"])


def _python_match(bodies: list[bytes], watch: Watchlist) -> int:
    """Pure Python: parse every body, the verifier once per distinct value."""
    from rekorkit.monitor.watchlist import parse_verifier

    seen: dict[str, Any] = {}
    hits = 0
    for raw in bodies:
        body = json.loads(raw)
        blob = _verifier_field(body)
        v = seen.get(blob)
        if v is None:
            v = seen[blob] = parse_verifier(blob.encode()) or False
        if v and (
            v.fingerprint in watch.fingerprints or any(w.matches(v) for w in watch.identities)
        ):
            hits += 1
        if _digest_field(body) in watch.digests:
            hits += 1
    return hits


def test_watchlist_match_python_baseline(benchmark: Any, stored: Any) -> None:
    _db, table, watch, _digest = stored
    bodies = table.column("body").to_pylist()
    expected = len(watch.match(table))
    hits = measure(benchmark, lambda: _python_match(bodies, watch), ops=N_MATCH, rounds=1)
    assert hits == expected > 0


def test_watchlist_match_columns(benchmark: Any, stored: Any) -> None:
    _db, table, watch, digest = stored
    matches = measure(
        benchmark,
        lambda: watch.match(table),
        ops=N_MATCH,
        baseline="test_watchlist_match_python_baseline",
        note="bodies parsed in bulk by DuckDB + distinct verifiers vs json.loads per entry",
    )
    assert matches and {m.watch for m in matches} == {f"digest:{digest}"}


def _rows(db: Path, origin: str) -> list[bytes]:
    with DuckDBStore(db, read_only=True) as store:
        return [e.body for e in store.entries(origin, 0, N_MATCH)]


def test_backscan_python_baseline(benchmark: Any, stored: Any, served: Any) -> None:
    db, table, watch, _digest = stored
    hits = measure(
        benchmark,
        lambda: _python_match(_rows(db, served.origin), watch),
        ops=N_MATCH,
        rounds=1,
    )
    assert hits == len(watch.match(table))


def test_backscan_stored(benchmark: Any, stored: Any, served: Any, tmp_path: Path) -> None:
    db, _table, watch, _digest = stored
    cfg = MonitorConfig(str(db), (LogConfig("bench", served.url, served.checkpoint_vkey),), watch)

    def run() -> int:
        async def go() -> int:
            service = RekorSyncService(cfg)
            try:
                return await service._scan("bench", served.origin, 0, N_MATCH, progress=False)
            finally:
                await service.stop()

        return asyncio.run(go())

    measure(
        benchmark,
        run,
        ops=N_MATCH,
        baseline="test_backscan_python_baseline",
        note=(
            "the service back-scan: watch index (built in the first round), "
            "matched entries in one query, alerts deduplicated"
        ),
    )
    with DuckDBStore(db, read_only=True) as store:
        n = store.count(served.origin)
    assert n == N_MATCH


def _drop_watch_index(db: Path) -> None:
    with DuckDBStore(db) as store, store.transaction() as con:
        for table in (
            "watch_verifiers",
            "watch_entry_verifiers",
            "watch_entry_digests",
            "watch_index_progress",
        ):
            con.execute(f"DROP TABLE IF EXISTS {table}")


def test_watch_index_build(benchmark: Any, stored: Any, served: Any) -> None:
    db, _table, _watch, _digest = stored

    def run() -> int:
        _drop_watch_index(db)
        with DuckDBStore(db) as store:
            return refresh_watch_index(store)

    indexed = measure(
        benchmark,
        run,
        ops=N_MATCH,
        rounds=2,
        baseline="test_backscan_python_baseline",
        note="once per stored entry: DuckDB to Arrow, from_json_strict per kind, index rows",
    )
    assert indexed == N_MATCH


def _backscan(
    benchmark: Any, stored: Any, served: Any, open_store: Callable[[], Any], note: str
) -> None:
    """Time ``Watchlist.scan_store`` over all stored entries; check it against body parsing."""
    _db, table, watch, _digest = stored

    def run() -> list[Any]:
        with open_store() as store:
            return watch.scan_store(store, served.origin, 0, N_MATCH)

    matches = measure(
        benchmark, run, ops=N_MATCH, baseline="test_backscan_python_baseline", note=note
    )
    assert [(m.log_index, m.watch) for m in matches] == [
        (m.log_index, m.watch) for m in watch.match(table)
    ]


def test_backscan_watch_index(benchmark: Any, stored: Any, served: Any) -> None:
    db = stored[0]
    with DuckDBStore(db) as store:
        refresh_watch_index(store)
    note = "Watchlist.scan_store: distinct verifiers judged once, joins over the watch index"
    _backscan(benchmark, stored, served, lambda: DuckDBStore(db), note)


@pytest.fixture(scope="module")
def pg_indexed(stored: Any, served: Any) -> Iterator[str]:
    """The stored entries in a PostgreSQL database, their watch index built: its URL."""
    _db, table, _watch, _digest = stored
    with start_postgres() as server:
        url = server.create_database()
        with PostgresStore(url) as store:
            store.commit_entries(served.origin, [table], start=0, end=N_MATCH)
            assert refresh_watch_index(store) == N_MATCH
        yield url


def test_backscan_watch_index_postgres(
    benchmark: Any, stored: Any, served: Any, pg_indexed: str
) -> None:
    note = (
        "Watchlist.scan_store on PostgreSQL: distinct verifiers judged once, "
        "joins over the watch index (index scans, loopback)"
    )
    _backscan(benchmark, stored, served, lambda: PostgresStore(pg_indexed), note)
