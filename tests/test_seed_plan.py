"""The end-to-end seed plan, one test per step, each against real servers on 127.0.0.1.

1. submit a DSSE envelope: the log index and UUID come back;
2. get the entry by index with every field (UUID, integrated time, inclusion proof);
3. validate its inclusion with the proof builder (from the log's tiles);
4. queue a submission, make the log fail it, see the retry succeed;
5. run the sync service and see it pick up new entries;
6. store a checkpoint and detect divergence (rewritten history, split view);
7. fetch tiles, cache them, serve them through the proxy;
8. persist an entry in DuckDB and read it back with every field intact.

Steps the later issues added beside the plan: the log keeps serving honest
clients while hostile ones are cut; a Dask audit into PostgreSQL equals the
single-process run; monitors and queue workers share one PostgreSQL; default
``rekorkit verify`` reads a small static mirror without connection storms; a
log pushes to a c2sp.org/tlog-mirror whose cosigned copy verifies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from rekorkit import merkle, parse_verifier_key, tiles
from rekorkit.audit import verify_v1_log
from rekorkit.checkpoint import open_checkpoint
from rekorkit.client import RekorV1Client, TileReader
from rekorkit.entries import LogEntry, dsse_v001_request
from rekorkit.entries.dsse import sign_envelope
from rekorkit.errors import InclusionError
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server

PAYLOAD_TYPE = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def log() -> Iterator[LocalRekor]:
    """One local log for the plan's first steps, with a few entries around the one submitted."""
    with start_server(seed=300) as srv:
        yield srv


@pytest.fixture(scope="module")
def submitted(log: LocalRekor) -> LogEntry:
    """Step 1's entry: a DSSE envelope signed with a fresh key, submitted to the v1 API."""
    key = ec.generate_private_key(ec.SECP256R1())
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()
    envelope = sign_envelope(PAYLOAD_TYPE, statement, key)
    with _v1(log) as client:
        return client.submit(dsse_v001_request(envelope, [key.public_key()]))


def _v1(log: LocalRekor) -> RekorV1Client:
    return RekorV1Client(
        log.url, public_key=log.public_key_pem, verifier=parse_verifier_key(log.v1_vkey)
    )


def test_step1_submit_dsse_returns_index_and_uuid(log: LocalRekor, submitted: LogEntry) -> None:
    assert submitted.log_index == 300  # after the 300 seeded entries
    assert submitted.uuid == merkle.leaf_hash(submitted.body).hex()
    body = json.loads(submitted.body)
    assert (body["kind"], body["apiVersion"]) == ("dsse", "0.0.1")


def test_step2_get_entry_by_index_has_every_field(log: LocalRekor, submitted: LogEntry) -> None:
    with _v1(log) as client:
        got = client.get_entry(submitted.log_index)  # every check on: UUID, proof, SET, checkpoint
    assert got.uuid == submitted.uuid
    assert got.body == submitted.body
    assert got.log_index == submitted.log_index
    assert got.integrated_time == submitted.integrated_time > 0
    assert got.log_id == submitted.log_id and len(got.log_id) == 32
    assert got.signed_entry_timestamp
    proof = got.inclusion_proof
    assert proof is not None and proof.checkpoint
    assert proof.log_index == submitted.log_index and proof.tree_size >= 301
    merkle.verify_inclusion(
        merkle.leaf_hash(got.body), proof.log_index, proof.tree_size, proof.hashes, proof.root_hash
    )


def test_step3_inclusion_validated_with_the_proof_builder(
    log: LocalRekor, submitted: LogEntry
) -> None:
    with TileReader(log.url) as reader:
        checkpoint = open_checkpoint(reader.checkpoint(), parse_verifier_key(log.checkpoint_vkey))
        builder = tiles.ProofBuilder(checkpoint.size, reader.read_tile)
        path = builder.inclusion_proof(submitted.log_index)
    leaf = merkle.leaf_hash(submitted.body)
    merkle.verify_inclusion(leaf, submitted.log_index, checkpoint.size, path, checkpoint.root)
    # The path built from tiles is the log's own proof when the sizes agree.
    proof = submitted.inclusion_proof
    assert proof is not None
    if proof.tree_size == checkpoint.size:
        assert tuple(path) == proof.hashes
    # A proof for another leaf does not pass for this one.
    other = builder.inclusion_proof(submitted.log_index - 1)
    with pytest.raises(InclusionError):
        merkle.verify_inclusion(leaf, submitted.log_index, checkpoint.size, other, checkpoint.root)


def test_step8_persist_an_entry_and_read_it_back_intact(
    log: LocalRekor, submitted: LogEntry, tmp_path: Path
) -> None:
    db = tmp_path / "seed.duckdb"
    verifier = parse_verifier_key(log.v1_vkey)
    with DuckDBStore(db) as store:
        report = asyncio.run(verify_v1_log(log.url, verifier, store=store))
    assert report.entries >= 301 and report.stored == report.entries
    with DuckDBStore(db, read_only=True) as store:  # a new connection: read from disk
        [stored] = store.find_by_uuid(submitted.uuid)
    assert stored.body == submitted.body
    assert stored.leaf_hash == merkle.leaf_hash(submitted.body)
    assert stored.uuid == submitted.uuid
    assert stored.log_index == submitted.log_index
    assert stored.global_index == submitted.log_index
    assert stored.integrated_time == submitted.integrated_time
    assert (stored.kind, stored.api_version) == ("dsse", "0.0.1")
    assert stored.checkpoint_size == report.checkpoint_size >= submitted.log_index + 1


def test_step4_queued_submission_survives_503s_and_429_then_verifies(tmp_path: Path) -> None:
    from rekorkit.client import RetryPolicy
    from rekorkit.entries import verify_entry
    from rekorkit.queue import QueueBackend, State, SubmissionQueue, SubmissionWorker

    key = ec.generate_private_key(ec.SECP256R1())
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()
    request = dsse_v001_request(sign_envelope(PAYLOAD_TYPE, statement, key), [key.public_key()])
    with start_server() as srv, SubmissionQueue(tmp_path / "queue.sqlite") as queue:
        backend = QueueBackend(srv.url, 1, public_key=srv.public_key_pem, vkey=srv.v1_vkey)
        sid = queue.enqueue(request, backend=backend)  # durable before it returns
        srv.set_faults(
            {"action": "status", "status": 503, "count": 2, "method": "POST"},
            {"action": "status", "status": 429, "retry_after": 1, "count": 1, "method": "POST"},
        )
        worker = SubmissionWorker(
            queue, retry=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.2), lease=10
        )
        report = asyncio.run(worker.run(once=True, handle_signals=False))
        assert (report.done, report.dead, report.open) == (1, 0, 0)
        sub = queue.get(sid)
    assert sub.state == State.DONE
    assert [a.status for a in sub.errors] == [503, 503, 429]
    assert sub.updated_at - sub.errors[-1].at >= 1.0  # Retry-After: 1 was honoured
    assert sub.receipt is not None
    result = verify_entry(sub.receipt, log_key=srv.public_key_pem, strict=True)
    assert result.entry is not None and result.entry.log_index == sub.log_index == 0
    assert result.entry.uuid == sub.uuid


def test_step_serve_honest_clients_are_served_while_hostile_ones_are_cut(tmp_path: Path) -> None:
    """``rekorkit serve`` alone on the network: 100 half-sent requests hang on it while a
    DSSE submission goes through; the half-sent ones get Rekor's JSON 408 at the deadline."""
    import socket
    import time

    with start_server(tmp_path / "log", request_timeout=1.0, fsync=False) as srv:
        host, port = srv.url.removeprefix("http://").rsplit(":", 1)
        hostile = [socket.create_connection((host, int(port)), timeout=5) for _ in range(100)]
        try:
            for s in hostile:
                s.sendall(b"POST /api/v1/log/entries HTTP/1.1\r\nContent-Length: 900\r\n\r\n{")
            key = ec.generate_private_key(ec.SECP256R1())
            envelope = sign_envelope(PAYLOAD_TYPE, b'{"subject":[]}', key)
            with _v1(srv) as client:
                entry = client.submit(dsse_v001_request(envelope, [key.public_key()]))
            assert entry.log_index == 0
            deadline = time.monotonic() + 6
            for s in hostile:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                answer = s.recv(4096)
                assert answer.startswith(b"HTTP/1.1 408 ")
                assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == 408
        finally:
            for s in hostile:
                s.close()


def test_step7_fetch_tiles_cache_them_serve_them_through_the_proxy(tmp_path: Path) -> None:
    """Tiles fetched with the tile client land in a FileSystemTileCache; a proxy over that
    cache serves them (verifying each up to the signed checkpoint, reading none of them
    again from the log), and the whole log verifies through the proxy."""
    import httpx
    from rekorkit import AsyncTileReader, verify_tile_log
    from rekorkit.proxy import start_proxy
    from rekorkit.tilecache import FileSystemTileCache

    with start_server(seed=2000, fsync=False) as srv:
        verifier = parse_verifier_key(srv.checkpoint_vkey)
        with (
            FileSystemTileCache(tmp_path / "tiles") as cache,
            TileReader(srv.url, cache=cache) as reader,
        ):
            cp = open_checkpoint(reader.checkpoint(), verifier)
            assert tiles.ProofBuilder(cp.size, reader.read_tile).root() == cp.root
            wanted = tiles.level0_tiles(0, cp.size, cp.size)
            bundles = [reader.entry_bundle(t.index, t.width) for t in wanted]
            level0 = reader.tiles(wanted)
            tiles.verify_bundles_against_tiles(bundles, level0, [t.index for t in wanted])
            assert cache.stats().tiles >= 2 * len(wanted)
        with start_proxy(srv.url, tmp_path / "tiles", srv.checkpoint_vkey, sync=None) as proxy:
            served = httpx.get(f"{proxy.url}/{wanted[3].entries_path}")
            assert served.status_code == 200 and served.content == bundles[3]

            async def audit() -> tuple[int, bytes]:
                async with AsyncTileReader(proxy.url) as through_proxy:
                    report = await verify_tile_log(through_proxy, verifier)
                return report.entries, report.root_hash

            assert asyncio.run(audit()) == (2000, cp.root)
            metrics = httpx.get(proxy.url + "/metrics").text
            assert 'rekorkit_proxy_misses_total{kind="entries"}' not in metrics
            assert 'rekorkit_proxy_misses_total{kind="tile"}' not in metrics


def test_step5_sync_service_stores_new_entries_verified(tmp_path: Path) -> None:
    from rekorkit.monitor import LogConfig, MonitorConfig, RekorSyncService

    with start_server(seed=1000, fsync=False) as srv:
        cfg = MonitorConfig(
            db=str(tmp_path / "monitor.duckdb"),
            logs=(LogConfig("local", srv.url, srv.checkpoint_vkey, poll_interval=0.1),),
        )

        async def run() -> list[LogEntry]:
            async with RekorSyncService(cfg) as service:
                new = await asyncio.to_thread(lambda: [_submit(srv) for _ in range(3)])
                for _ in range(200):  # bounded: 10 s
                    if service.followers[0].status.frontier == 1003:
                        break
                    await asyncio.sleep(0.05)
            return new

        new = asyncio.run(run())
    with DuckDBStore(tmp_path / "monitor.duckdb", read_only=True) as store:
        assert store.verified_ranges(srv.origin) == [(0, 1003)]
        start, checkpoint = store.frontier(srv.origin) or (None, None)
        assert start == 0 and checkpoint is not None and checkpoint.size == 1003
        open_checkpoint(checkpoint.note, parse_verifier_key(srv.checkpoint_vkey))
        for entry in new:
            stored = store.entry(srv.origin, entry.log_index)
            assert stored is not None and stored.body == entry.body
            assert stored.leaf_hash == merkle.leaf_hash(entry.body)


def _submit(srv: LocalRekor) -> LogEntry:
    key = ec.generate_private_key(ec.SECP256R1())
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()
    envelope = sign_envelope(PAYLOAD_TYPE, statement, key)
    with _v1(srv) as client:
        return client.submit(dsse_v001_request(envelope, [key.public_key()]))


@pytest.mark.parametrize("readers", ["all", "header"])
def test_step6_stored_checkpoint_then_divergence_detected(tmp_path: Path, readers: str) -> None:
    from rekorkit.errors import ConsistencyError
    from rekorkit.monitor import (
        AlertKind,
        CallbackPublisher,
        LogConfig,
        MonitorConfig,
        RekorSyncService,
        Vantage,
    )

    with start_server(seed=1500, fsync=False) as srv:
        view = Vantage("fork-view", srv.url, {"x-rekorkit-view": "fork"})
        cfg = MonitorConfig(
            db=str(tmp_path / "monitor.duckdb"),
            logs=(LogConfig("local", srv.url, srv.checkpoint_vkey, vantage=(view,)),),
        )
        alerts: list[dict[str, object]] = []

        async def run() -> None:
            service = RekorSyncService(cfg, publishers=[CallbackPublisher(alerts.append)])
            try:
                await service.sync_once()  # stores checkpoint 1500
                stored = service.store.latest_checkpoint(srv.origin)
                assert stored is not None and stored.size == 1500
                srv.fork(at=1000, extra=700, readers=readers)
                await service.sync_once()
            finally:
                await service.stop()

        asyncio.run(run())
    kind = AlertKind.REWRITTEN_HISTORY if readers == "all" else AlertKind.SPLIT_VIEW
    assert [a["kind"] for a in alerts] == [kind.value]
    evidence = alerts[0]["evidence"]
    assert isinstance(evidence, dict)
    verifier = parse_verifier_key(srv.checkpoint_vkey)
    old = open_checkpoint(evidence["old"], verifier)
    new = open_checkpoint(evidence["new"], verifier)
    assert (old.size, new.size) == (1500, 1700)
    proof = [bytes.fromhex(h) for h in evidence["proof"]]
    with pytest.raises(ConsistencyError):
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)


def test_step_shared_postgres_and_a_dask_audit_equal_the_single_process_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pg import start_postgres
    from rekorkit.audit import verify_tile_log
    from rekorkit.cli import main
    from rekorkit.client import AsyncTileReader
    from rekorkit.store.open import open_store

    with start_server(seed=3000, fsync=False) as srv, start_postgres() as pg:
        url = pg.create_database()
        status = main(
            ["verify", srv.url, "--key", srv.checkpoint_vkey, "--db", url, "--workers", "2",
             "--json"]
        )  # fmt: skip
        report = json.loads(capsys.readouterr().out)
        assert status == 0 and report["entries"] == 3000 and report["stored"] == 3000

        async def single() -> bytes:
            async with AsyncTileReader(srv.url) as reader:
                one = await verify_tile_log(reader, parse_verifier_key(srv.checkpoint_vkey))
            return one.root_hash

        assert report["root_hash"] == asyncio.run(single()).hex()
        with open_store(url) as store:  # another process's view of the shared store
            assert store.verified_ranges(srv.origin) == [(0, 3000)]
            entry = store.entry(srv.origin, 2999)
            assert entry is not None and entry.leaf_hash == merkle.leaf_hash(entry.body)


def test_step_monitors_and_queue_workers_share_one_postgres() -> None:
    """Issue 17 item 4, in one process: two queue workers drain one PostgreSQL queue into
    the log, two monitors follow it into the same database; each entry, submission and
    alert exactly once (the same with real processes: tests/monitor/test_shared_postgres.py)."""
    import hashlib

    from pg import start_postgres
    from rekorkit.monitor import (
        CallbackPublisher,
        LogConfig,
        MonitorConfig,
        RekorSyncService,
        Watchlist,
    )
    from rekorkit.queue import QueueBackend, State, SubmissionQueue, SubmissionWorker
    from rekorkit.store.open import open_store

    key = ec.generate_private_key(ec.SECP256R1())
    statements = [
        json.dumps({"_type": "https://in-toto.io/Statement/v1", "n": i}).encode() for i in range(24)
    ]
    requests = [
        dsse_v001_request(sign_envelope(PAYLOAD_TYPE, s, key), [key.public_key()])
        for s in statements
    ]
    watched = [hashlib.sha256(s).hexdigest() for s in statements[::3]]
    delivered: list[dict[str, object]] = []
    with start_server() as srv, start_postgres() as pg:
        url = pg.create_database()
        backend = QueueBackend(srv.url, 1, public_key=srv.public_key_pem, vkey=srv.v1_vkey)
        with SubmissionQueue(url, validation_workers=1) as queue:
            ids = queue.enqueue_many(requests, backend=backend)
        config = MonitorConfig(
            db=url,
            logs=(LogConfig("local", srv.url, srv.checkpoint_vkey, max_batch=5),),
            watchlist=Watchlist(digests=watched),
        )

        async def run() -> list[int]:
            queues = [SubmissionQueue(url) for _ in range(2)]
            workers = [SubmissionWorker(q, lease=10) for q in queues]
            monitors = [
                RekorSyncService(config, publishers=[CallbackPublisher(delivered.append)])
                for _ in range(2)
            ]
            try:
                reports = await asyncio.gather(
                    *(w.run(once=True, handle_signals=False) for w in workers)
                )
                for _ in range(2):
                    await asyncio.gather(*(m.sync_once() for m in monitors))
            finally:
                for m in monitors:
                    await m.stop()
                for q in queues:
                    q.close()
            return [r.done for r in reports]

        done = asyncio.run(run())
        assert sum(done) == len(ids)
        with SubmissionQueue(url) as queue:
            assert {queue.get(i).state for i in ids} == {State.DONE}
        with open_store(url) as store:
            assert store.verified_ranges(srv.origin) == [(0, len(ids))]
            assert store.count(srv.origin) == len(ids)
    assert sorted(d["evidence"]["value"] for d in delivered) == sorted(watched)  # type: ignore[index]
    assert len({d["id"] for d in delivered}) == len(delivered)


def test_step_default_verify_reads_a_small_static_mirror_without_connection_storms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: ``rekorkit verify`` with default flags (adaptive window, paced connects)
    against ``python -m http.server`` (HTTP/1.0, listen backlog 5) verifies the log
    and agrees with ``--concurrency 1``."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from rekorkit.cli import main

    with start_server(tmp_path / "log", seed=2500, fsync=False) as srv, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        static = subprocess.Popen(
            [*argv, "--directory", str(srv.data_dir / "tiles")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):  # at most about 30 s for the server to listen
                try:
                    httpx.get(url + "/checkpoint", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            reports = []
            for extra in ([], ["--concurrency", "1"]):
                flags = ["--key", srv.checkpoint_vkey, "--no-store", "--json", *extra]
                assert main(["verify", url, *flags]) == 0
                reports.append(json.loads(capsys.readouterr().out))
        finally:
            static.terminate()
            static.wait(timeout=30)
    assert [r["entries"] for r in reports] == [2500, 2500]
    assert reports[0]["root_hash"] == reports[1]["root_hash"]


def test_step7_a_log_pushes_to_a_tlog_mirror_whose_cosigned_copy_verifies(
    tmp_path: Path,
) -> None:
    """c2sp.org/tlog-mirror: the log's checkpoint and entry packages are pushed over HTTP;
    the mirror cosigns, and its served copy audits as the log itself does."""
    import hashlib

    import httpx
    from rekorkit.audit import verify_tile_log
    from rekorkit.client import AsyncTileReader
    from rekorkit.note import CosignatureSigner, verify_note
    from rekorkit.proxy import TlogMirror, create_mirror_app, serve_in_thread
    from rekorkit.proxy.tlogmirror import add_entries_body
    from rekorkit.tilecache import FileSystemTileCache

    size = 700
    signer = CosignatureSigner.generate("mirror.example/m1")
    with start_server(seed=size) as srv, FileSystemTileCache(tmp_path) as cache:
        vkey = parse_verifier_key(srv.checkpoint_vkey)
        checkpoint = httpx.get(f"{srv.url}/checkpoint").content
        entries: list[bytes] = []
        for t in tiles.level0_tiles(0, size, size):
            entries += tiles.parse_entry_bundle(httpx.get(f"{srv.url}/{t.entries_path}").content)
        leaves = [merkle.leaf_hash(e) for e in entries]
        with serve_in_thread(create_mirror_app(TlogMirror(cache, vkey, signer))) as url:
            r = httpx.post(f"{url}/add-checkpoint", content=b"old 0\n\n" + checkpoint)
            assert r.status_code == 200, r.text
            body = add_entries_body(srv.origin, 0, entries, leaves)
            r = httpx.post(f"{url}/add-entries", content=body)
            assert r.status_code == 200, r.text
            copy = f"{url}/{hashlib.sha256(srv.origin.encode()).hexdigest()}"
            cosigned = httpx.get(f"{copy}/checkpoint").content
            assert signer.name in verify_note(cosigned, [vkey, signer.verifier()]).verified_names

            async def audit() -> int:
                async with AsyncTileReader(copy) as reader:
                    return (await verify_tile_log(reader, vkey)).entries

            assert asyncio.run(audit()) == size
