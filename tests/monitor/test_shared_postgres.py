"""Monitors and queue workers sharing one PostgreSQL database, against one local log.

Two sync services racing on one store (in one process, then as two real
``rekorkit monitor`` processes beside two ``rekorkit queue work`` processes):
every entry stored once, none lost, every alert stored once and delivered
once, every queued submission logged once, also with one monitor killed
(``kill -9``) and replaced mid-stream; no false alert from the races.
"""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from monitor_support import Cert, config, identity_cert, submit_signed
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit.entries import hashedrekord_v001_request
from rekorkit.errors import MalformedError
from rekorkit.monitor import (
    AlertKind,
    CallbackPublisher,
    IdentityWatch,
    RekorSyncService,
    Watchlist,
)
from rekorkit.monitor.config import parse_config
from rekorkit.monitor.postgres_alerts import PostgresAlertStore
from rekorkit.queue import QueueBackend, State, SubmissionQueue
from rekorkit.store.postgres import PostgresStore
from rekorkit.testing import LocalRekor, start_server

ALICE = ("alice@example.com", "https://issuer.example")
DEADLINE = 90.0


def _watch_alice() -> Watchlist:
    return Watchlist([IdentityWatch(ALICE[0], (ALICE[1],))])


def _entry_counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as con:
        row = con.execute("SELECT count(*), count(DISTINCT log_index) FROM entries").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_db_key_takes_a_postgres_url_or_a_path(tmp_path: Path) -> None:
    logs = [{"name": "l", "url": "http://127.0.0.1:1", "key": "x"}]
    url = "postgresql://monitor@db.example/rekor"
    assert parse_config({"db": url, "logs": logs}, tmp_path).db == url
    assert parse_config({"db": "m.duckdb", "logs": logs}, tmp_path).db == str(tmp_path / "m.duckdb")
    cfg = parse_config({"logs": logs, "delivery_lease": 5}, tmp_path)
    assert cfg.delivery_lease == 5.0
    for bad in ({"db": ""}, {"db": 3}, {"delivery_lease": 0}, {"delivery_lease": "x"}):
        with pytest.raises(MalformedError) as info:
            parse_config({"logs": logs, **bad}, tmp_path)
        assert info.value.where == next(iter(bad))


def test_two_services_racing_on_one_postgres_store_each_entry_and_alert_once(
    pg_url: str,
) -> None:
    alice = identity_cert(*ALICE)
    delivered: list[dict[str, Any]] = []
    with start_server() as srv:
        watched = submit_signed(srv, 20, cert=alice)
        submit_signed(srv, 10)

        async def race() -> None:
            cfg = config(srv, pg_url, watchlist=_watch_alice(), max_batch=7)  # type: ignore[arg-type]

            down = [True]

            async def receive(doc: dict[str, Any]) -> None:
                if down[0]:
                    raise RuntimeError("receiver down")
                await asyncio.sleep(0.01)  # a slow receiver: deliveries in flight overlap
                delivered.append(doc)

            pub = CallbackPublisher(receive, name="hook")
            services = [RekorSyncService(cfg, publishers=[pub]) for _ in range(2)]
            try:
                for _ in range(3):  # rounds in lockstep; the log grows in between
                    await asyncio.gather(*(s.sync_once() for s in services))
                    await asyncio.to_thread(submit_signed, srv, 5, cert=alice)
                await asyncio.gather(*(s.sync_once() for s in services))
                for s in services:
                    assert all(f.status.failures == 0 for f in s.followers)
                assert delivered == []
                down[0] = False  # back up: both monitors flush the one outbox at once
                counts = await asyncio.gather(*(s.dispatcher.deliver() for s in services))
                assert sum(counts) == 35 and min(counts) > 0
            finally:
                for s in services:
                    await s.stop()

        asyncio.run(race())
        size = len(watched) + 10 + 15
        assert _entry_counts(pg_url) == (size, size)
        with PostgresStore(pg_url) as store:
            alerts = PostgresAlertStore(store).alerts()
            origin = store.origins()[0].origin
            frontier = store.frontier(origin)
            assert frontier is not None and frontier[1].size == size
        assert {a.alert.kind for a in alerts} == {AlertKind.WATCH_MATCH}  # no false alarms
        assert len(alerts) == 35
        ids = Counter(d["id"] for d in delivered)
        assert len(ids) == 35 and set(ids.values()) == {1}


class _Webhook:
    """A webhook receiver on loopback counting deliveries per alert id."""

    def __init__(self) -> None:
        self.got: Counter[str] = Counter()
        self.up = threading.Event()
        lock = threading.Lock()
        got, up = self.got, self.up

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("content-length", "0")), 1 << 24)
                doc = json.loads(self.rfile.read(length))
                if not up.is_set():
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                time.sleep(0.05)  # a slow receiver: deliveries in flight overlap
                with lock:
                    got[doc["id"]] += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    hook = _Webhook()
    yield hook
    hook.close()


def _requests(cert: Cert, n: int) -> list[dict[str, Any]]:
    key, certificate = cert
    out = []
    for i in range(n):
        digest = hashlib.sha256(b"shared %d %s" % (i, os.urandom(8))).digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        out.append(hashedrekord_v001_request(sig, certificate, digest))
    return out


def _write_config(path: Path, srv: LocalRekor, db: str, hook: str) -> None:
    lines = [
        f'db = "{db}"',
        "delivery_interval = 0.2",
        "delivery_lease = 5",
        "[[logs]]",
        'name = "local"',
        f'url = "{srv.url}"',
        f'key = "{srv.checkpoint_vkey}"',
        "poll_interval = 0.2",
        "max_batch = 16",
        "[[watchlist.identities]]",
        f'subject = "{ALICE[0]}"',
        f'issuers = ["{ALICE[1]}"]',
        "[[publishers]]",
        'type = "webhook"',
        f'url = "{hook}"',
    ]
    path.write_text("\n".join(lines) + "\n")


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rekorkit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait (kill after 30 s); the tail of its stderr, for failure messages."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err[-3000:]


def _matched(url: str, entries: int, alerts: int) -> bool:
    """Whether every entry is stored and every watch match alert is in the outbox."""
    with psycopg.connect(url) as con:
        row = con.execute(
            "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM monitor_alerts)"
        ).fetchone()
    return row is not None and row[0] >= entries and row[1] >= alerts


def test_two_monitors_and_two_queue_workers_on_one_postgres(
    pg_url: str, webhook: _Webhook, tmp_path: Path
) -> None:
    n_alice, n_other = 40, 20
    with start_server() as srv:
        backend = QueueBackend(srv.url, 1, public_key=srv.public_key_pem, vkey=srv.v1_vkey)
        with SubmissionQueue(pg_url, validation_workers=1) as queue:
            ids = queue.enqueue_many(
                _requests(identity_cert(*ALICE), n_alice)
                + _requests(identity_cert("bob@example.com", ALICE[1]), n_other),
                backend=backend,
            )
        cfg = tmp_path / "monitor.toml"
        _write_config(cfg, srv, pg_url, webhook.url)
        monitors = [_cli("monitor", "--config", str(cfg)) for _ in range(2)]
        workers = [
            _cli("queue", "work", "--once", "--json", "--queue", pg_url, "--lease", "10")
            for _ in range(2)
        ]
        try:
            reports = []
            for w in workers:
                out, err = w.communicate(timeout=DEADLINE)
                assert w.returncode == 0, err
                reports.append(json.loads(out))
            assert sum(r["done"] for r in reports) == len(ids)  # each sent by one worker
            assert all(r["dead"] == 0 for r in reports)
            # kill -9 one monitor mid-stream and start another in its place
            os.kill(monitors[0].pid, signal.SIGKILL)
            monitors[0].communicate(timeout=10)
            monitors[0] = _cli("monitor", "--config", str(cfg))
            total = n_alice + n_other
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and not _matched(pg_url, total, n_alice):
                assert all(m.poll() is None for m in monitors), "a monitor exited"
                time.sleep(0.2)
            webhook.up.set()  # the receiver comes back: both monitors flush one outbox
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and len(webhook.got) < n_alice:
                time.sleep(0.2)
            time.sleep(1.0)  # let a duplicate, if any, arrive
        finally:
            logs = [_stop(m) for m in monitors]
        assert [m.returncode for m in monitors] == [0, 0], logs

        assert httpx.get(srv.url + "/healthz").json()["size"] == total  # nothing sent twice
        assert _entry_counts(pg_url) == (total, total), logs  # no entry duplicated or lost
        with SubmissionQueue(pg_url) as queue:
            subs = [queue.get(i) for i in ids]
        assert {s.state for s in subs} == {State.DONE}
        assert sorted(s.log_index for s in subs) == list(range(total))  # type: ignore[type-var]
        with psycopg.connect(pg_url) as con:
            leaves = {bytes(r[0]) for r in con.execute("SELECT leaf_hash FROM entries")}
            kinds = con.execute(
                "SELECT kind, count(*) FROM monitor_alerts GROUP BY kind"
            ).fetchall()
        assert leaves == {s.leaf_hash for s in subs}  # the log holds each submission once
        assert kinds == [("watch_match", n_alice)], logs  # no false alarm from the races
        assert len(webhook.got) == n_alice and set(webhook.got.values()) == {1}
        with PostgresStore(pg_url) as store:
            alerts = PostgresAlertStore(store)
            assert {a.alert.alert_id for a in alerts.alerts()} == set(webhook.got)
            assert alerts.pending(f"webhook:{webhook.url}") == []


def test_monitor_db_flag_overrides_the_config_store(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rekorkit.cli import main

    cfg = tmp_path / "monitor.toml"
    with start_server(seed=300) as srv:
        _write_config(cfg, srv, "unused.duckdb", "http://127.0.0.1:1/hook")
        assert main(["monitor", "--config", str(cfg), "--db", pg_url, "--once"]) == 0
        assert json.loads(capsys.readouterr().out)["local"]["frontier"] == 300
    assert _entry_counts(pg_url) == (300, 300)
    assert not (tmp_path / "unused.duckdb").exists()
    down = "postgresql://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2"
    assert main(["monitor", "--config", str(cfg), "--db", down, "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rekorkit monitor: cannot open PostgreSQL store") and "hunter2" not in err


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_monitor_started_on_an_empty_log_follows_it_without_alerts(
    backend: str, pg_url: str, tmp_path: Path
) -> None:
    db = pg_url if backend == "postgres" else str(tmp_path / "m.duckdb")
    delivered: list[dict[str, Any]] = []
    with start_server() as srv:

        async def run() -> dict[str, Any]:
            svc = RekorSyncService(
                config(srv, db, watchlist=_watch_alice()),  # type: ignore[arg-type]
                publishers=[CallbackPublisher(delivered.append)],
            )
            try:
                await svc.sync_once()  # size 0
                await asyncio.to_thread(submit_signed, srv, 3, cert=identity_cert(*ALICE))
                return (await svc.sync_once())["local"].to_json()
            finally:
                await svc.stop()

        status = asyncio.run(run())
    assert (status["frontier"], status["failures"]) == (3, 0)
    assert [d["kind"] for d in delivered] == ["watch_match"] * 3
