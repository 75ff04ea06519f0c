"""Distributed audits on a real Dask LocalCluster, a real log server and a real PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from pg import PostgresServer, pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit import AsyncTileReader, parse_verifier_key, tiles, verify_tile_log
from rekorkit.audit import distributed
from rekorkit.audit.distributed import (
    ChunkTask,
    chunk_spans,
    chunk_tiles_for,
    local_cluster,
    verify_chunk,
    verify_distributed,
)
from rekorkit.cli import main
from rekorkit.errors import RekorAPIError, StoreError, TileError
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.store.postgres import PostgresStore
from rekorkit.testing import LocalRekor, start_server

SIZE = 3000  # 11 full tiles and a partial one


@pytest.fixture(scope="module")
def log() -> Iterator[LocalRekor]:
    with start_server(seed=SIZE) as srv:
        yield srv


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as c:  # type: ignore[no-untyped-call]
        yield c


def _single(log: LocalRekor, store: Any = None) -> Any:
    async def go() -> Any:
        async with AsyncTileReader(log.url) as reader:
            return await verify_tile_log(
                reader, parse_verifier_key(log.checkpoint_vkey), store=store
            )

    return asyncio.run(go())


def _dist(log: LocalRekor, client: Any, **kw: Any) -> Any:
    vkey = parse_verifier_key(log.checkpoint_vkey)
    return asyncio.run(verify_distributed(log.url, vkey, client, chunk_tiles=2, **kw))


def test_chunks_are_tile_aligned() -> None:
    assert chunk_spans(300, 1000, 3000, 2) == [(256, 768), (768, 1024)]
    assert chunk_spans(0, 3000, 3000, 8) == [(0, 2048), (2048, 3000)]
    with pytest.raises(ValueError):
        chunk_spans(0, 10, 5, 1)


def test_equals_the_single_process_run_rows_included(
    log: LocalRekor, client: Any, pg_url: str, tmp_path: Path
) -> None:
    with DuckDBStore(tmp_path / "one.duckdb") as one:
        single = _single(log, one)
        want = one.entries_table(log.origin, 0, SIZE)
    with PostgresStore(pg_url) as store:
        report = _dist(log, client, store=store)
        assert (report.entries, report.root_hash, report.stored) == (SIZE, single.root_hash, SIZE)
        assert store.verified_ranges(log.origin) == [(0, SIZE)]
        got = store.entries_table(log.origin, 0, SIZE)
        assert got.cast(want.schema).equals(want)  # DuckDB hands back binary, not binary(32)
        again = _dist(log, client, store=store)  # nothing new: resumes at the end
        assert again.entries == 0 and again.previous_size == SIZE
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM entry_staging").fetchone() == (0,)


def test_resume_from_an_unaligned_index_into_duckdb(
    log: LocalRekor, client: Any, tmp_path: Path
) -> None:
    with DuckDBStore(tmp_path / "d.duckdb") as store:
        first = _dist(log, client, store=store, end=1000)
        assert first.entries == 1000
        rest = _dist(log, client, store=store)
        assert (rest.start, rest.entries) == (1000, SIZE - 1000)
        assert store.verified_ranges(log.origin) == [(0, SIZE)]
        assert store.entry(log.origin, 2999) is not None


def test_parquet_partitions_and_manifest(log: LocalRekor, client: Any, tmp_path: Path) -> None:
    report = _dist(log, client, parquet=tmp_path / "lake", start=100, end=2000)
    [part] = list((tmp_path / "lake").iterdir())
    table = pq.read_table(part)  # the partition directory is one dataset
    assert sorted(table.column("log_index").to_pylist()) == list(range(100, 2000))
    manifest = json.loads(next(part.glob("_checkpoint-*.json")).read_text())
    assert manifest["root_hash"] == report.root_hash.hex() and manifest["ranges"] == [[100, 2000]]


def test_tampered_tile_inside_one_chunk_exits_1_with_evidence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with start_server(seed=2048) as srv:
        path = srv.data_dir / "tiles" / tiles.TileID(0, 5, 256).path
        data = bytearray(path.read_bytes())
        data[7 * 32] ^= 1  # the hash of entry 5*256+7
        path.write_bytes(bytes(data))
        status = main(
            ["verify", srv.url, "--key", srv.checkpoint_vkey, "--no-store", "--workers", "2",
             "--json"]
        )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert status == 1 and out["type"] == "TileError"
    assert out["evidence"]["entry_index"] == 5 * 256 + 7 and out["evidence"]["index"] == 5


def test_worker_killed_mid_chunk_is_retried_without_duplicates(
    log: LocalRekor, client: Any, pg_url: str, tmp_path: Path
) -> None:
    pids = list(client.run(os.getpid).values())
    log.set_faults({"action": "latency", "latency": 0.3, "path_prefix": "/tile/entries"})
    killer = threading.Timer(0.8, os.kill, (pids[0], signal.SIGKILL))
    try:
        killer.start()
        with PostgresStore(pg_url) as store:
            report = _dist(log, client, store=store, parquet=tmp_path / "lake")
            assert report.entries == SIZE and store.count(log.origin) == SIZE
    finally:
        killer.cancel()
        log.set_faults()
    with psycopg.connect(pg_url) as con:
        row = con.execute("SELECT count(*), count(DISTINCT log_index) FROM entries").fetchone()
    assert row == (SIZE, SIZE)
    [part] = list((tmp_path / "lake").iterdir())  # no half-written file of the dead worker
    assert sorted(pq.read_table(part).column("log_index").to_pylist()) == list(range(SIZE))
    assert pids[0] not in client.run(os.getpid).values()  # that worker really died


def test_postgres_restart_mid_run_never_marks_a_half_range(
    log: LocalRekor, client: Any, pg_url: str, pg_server: PostgresServer
) -> None:
    log.set_faults({"action": "latency", "latency": 0.3, "path_prefix": "/tile/entries"})
    restart = threading.Timer(0.8, pg_server.restart, ("immediate",))
    store = PostgresStore(pg_url)
    try:
        restart.start()
        try:
            report = _dist(log, client, store=store)
        except StoreError as exc:  # the coordinator's connection died: a clear error
            assert "PostgreSQL" in str(exc) or "staged" in str(exc)
            report = None
        restart.join()
    finally:
        log.set_faults()
        store.close()
    with PostgresStore(pg_url) as after:
        ranges = after.verified_ranges(log.origin)
        if report is None:
            assert ranges == [] and after.count() == 0
        else:
            assert ranges == [(0, SIZE)] and after.count(log.origin) == SIZE


def test_chunks_sized_to_the_cluster() -> None:
    assert chunk_tiles_for(262_144, 2) == 171  # 6 tasks: 3 per worker
    assert chunk_tiles_for(3000, 2) == 2
    assert chunk_tiles_for(100, 8) == 1 and chunk_tiles_for(0, 2) == 1
    assert chunk_tiles_for(10**9, 10) == distributed.MAX_CHUNK_TILES  # a retry redoes little


def test_default_chunks_and_one_reader_per_worker_across_tasks(
    log: LocalRekor, client: Any
) -> None:
    vkey = parse_verifier_key(log.checkpoint_vkey)
    report = asyncio.run(verify_distributed(log.url, vkey, client))
    assert (report.entries, report.root_hash) == (SIZE, _single(log).root_hash)

    def readers() -> list[int]:
        return [id(r) for r in distributed._worker_io(os.getpid())._readers.values()]

    before = client.run(readers)
    asyncio.run(verify_distributed(log.url, vkey, client))
    after = client.run(readers)
    assert after == before and all(len(ids) == 1 for ids in after.values())


def test_a_chunk_streams_in_groups_with_the_same_compact_range(
    log: LocalRekor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = verify_chunk(ChunkTask(log.url, log.origin, SIZE, 0, SIZE, ((0, SIZE),), "w"))
    monkeypatch.setattr(distributed, "GROUP_TILES", 2)  # 6 groups, read ahead of each other
    task = ChunkTask(log.url, log.origin, SIZE, 0, SIZE, ((100, 2900),), "g", parquet=str(tmp_path))
    grouped = verify_chunk(task)
    assert grouped.failure is None and grouped.hashes == whole.hashes
    assert (grouped.entries, grouped.nbytes, grouped.staged) == (SIZE, whole.nbytes, 2800)
    [part] = list(tmp_path.iterdir())  # one file per chunk, in place only when complete
    assert part.name == "part-000000000000000.parquet"
    assert pq.read_table(part).column("log_index").to_pylist() == list(range(100, 2900))


def test_a_tampered_tile_in_a_later_group_names_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distributed, "GROUP_TILES", 2)
    with start_server(seed=2048) as srv:
        path = srv.data_dir / "tiles" / tiles.TileID(0, 5, 256).path
        data = bytearray(path.read_bytes())
        data[9 * 32 + 3] ^= 0x80
        path.write_bytes(bytes(data))
        task = ChunkTask(
            srv.url, srv.origin, 2048, 0, 2048, ((0, 2048),), "t", parquet=str(tmp_path)
        )
        result = verify_chunk(task)
    assert result.failure is not None and result.hashes == ()
    assert result.failure["evidence"]["entry_index"] == 5 * 256 + 9
    assert result.failure["evidence"]["chunk"] == [0, 2048]
    assert list(tmp_path.iterdir()) == []  # the groups before it left no file behind


def test_local_cluster_workers_keep_the_adaptive_mmap_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import Client

    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    monkeypatch.delenv(names[0], raising=False)  # a previous nanny's export
    with local_cluster(1) as cluster, Client(cluster) as c:  # type: ignore[no-untyped-call]
        [env] = c.run(lambda: {k: os.environ.get(k) for k in names}).values()
        [threads] = c.nthreads().values()
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"} and threads == 1


def test_bundles_only_equals_the_default_run(log: LocalRekor, client: Any) -> None:
    derived = _dist(log, client, fetch_level0=False)
    assert (derived.entries, derived.root_hash) == (SIZE, _single(log).root_hash)


def test_bundles_only_a_tampered_entry_is_named_by_a_second_pass(client: Any) -> None:
    with start_server(seed=2048) as srv:
        path = srv.data_dir / "tiles" / tiles.entries_path(5, 256)
        data = bytearray(path.read_bytes())
        data[tiles.bundle_prefix_len(bytes(data), 7) + 2 + 10] ^= 1  # a byte of entry 5*256+7
        path.write_bytes(bytes(data))
        vkey = parse_verifier_key(srv.checkpoint_vkey)
        with pytest.raises(TileError) as caught:
            asyncio.run(
                verify_distributed(srv.url, vkey, client, chunk_tiles=2, fetch_level0=False)
            )
    evidence = caught.value.evidence
    assert evidence["entry_index"] == 5 * 256 + 7 and evidence["chunk"] == [1024, 1536]


def test_a_worker_keeps_a_few_readers_and_closes_the_one_it_drops(log: LocalRekor) -> None:
    io = distributed._worker_io(os.getpid())
    for concurrency in range(1, 7):  # one reader per (url, concurrency): six keys
        task = ChunkTask(
            log.url, log.origin, SIZE, 0, 256, ((0, 256),), "r", concurrency=concurrency
        )
        assert verify_chunk(task).entries == 256
        if concurrency == 1:
            first = io._readers[(log.url, 1)]
    assert len(io._readers) == 4 and (log.url, 1) not in io._readers
    with pytest.raises(RekorAPIError, match="transport is closed"):
        io.run(log.url, 99, lambda _: first.checkpoint())


def test_verify_command_on_a_running_scheduler(
    log: LocalRekor, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    address = client.scheduler.address  # what `--dask tcp://HOST:8786` names
    status = main(
        ["verify", log.url, "--key", log.checkpoint_vkey, "--no-store", "--dask", address, "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and (out["entries"], out["checkpoint_size"]) == (SIZE, SIZE)
    assert out["root_hash"] == _single(log).root_hash.hex()
    assert len(client.run(os.getpid)) == 2  # the command left the cluster running
