"""Split-view checks for Rekor v1 logs: a vantage point is another v1 API root."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from monitor_support import submit_signed
from rekorkit import merkle
from rekorkit.checkpoint import open_checkpoint
from rekorkit.errors import ConsistencyError
from rekorkit.monitor import (
    AlertKind,
    CallbackPublisher,
    LogConfig,
    MonitorConfig,
    RekorSyncService,
    Vantage,
)
from rekorkit.note import parse_verifier_key
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server

FORK_VIEW = {"x-rekorkit-view": "fork"}


def _v1_config(srv: LocalRekor, db: Path, *vantage: Vantage) -> MonitorConfig:
    log = LogConfig("v1", srv.url, srv.v1_vkey, api="v1", vantage=vantage, timeout=5.0)
    return MonitorConfig(db=str(db), logs=(log,))


def _run_once(cfg: MonitorConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One round of a one-log configuration; the alerts delivered and the log's status."""
    delivered: list[dict[str, Any]] = []

    async def go() -> dict[str, Any]:
        svc = RekorSyncService(cfg, publishers=[CallbackPublisher(delivered.append)])
        try:
            (status,) = (await svc.sync_once()).values()
            return status.to_json()
        finally:
            await svc.stop()

    status = asyncio.run(go())
    return delivered, status


def _sources(db: Path, origin: str) -> dict[str, set[int]]:
    """Per source, the sizes recorded as seen there."""
    out: dict[str, set[int]] = {}
    with DuckDBStore(db, read_only=True) as store:
        for size, _root, source, _first, _last in store.sightings(origin):
            out.setdefault(source, set()).add(size)
    return out


@contextmanager
def _two_copies(tmp: Path, seed: int, more: int) -> Iterator[tuple[LocalRekor, LocalRekor]]:
    """The same log twice: ``seed`` entries, and a copy of it ``more`` entries ahead."""
    with start_server(tmp / "base", seed=seed):
        pass
    shutil.copytree(tmp / "base", tmp / "ahead")
    with start_server(tmp / "base") as base, start_server(tmp / "ahead") as ahead:
        submit_signed(ahead, more)
        yield base, ahead


@contextmanager
def _closed_port() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def _fixed_answers(answers: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server answering 200 with a fixed body per path (404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path.split("?", 1)[0])
            self.send_response(404 if body is None else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _recheck_offline(alert: dict[str, Any], vkey: str) -> None:
    """What a third party does with a v1 split-view alert: both notes verify under
    the log key, and the proof in the evidence does not join their roots."""
    ev = alert["evidence"]
    verifier = parse_verifier_key(vkey)
    old = open_checkpoint(ev["old"], verifier)
    new = open_checkpoint(ev["new"], verifier)
    assert (old.size, new.size) == (ev["old_size"], ev["new_size"])
    assert (old.root.hex(), new.root.hex()) == (ev["old_root"], ev["new_root"])
    proof = [bytes.fromhex(h) for h in ev["proof"]]
    assert proof, "the log served a proof, and the evidence keeps it"
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except ConsistencyError as exc:
        assert exc.evidence["reason"] == ev["check"]
        return
    raise AssertionError("the evidence does not show a split view")


def test_consistent_vantages_same_size_and_ahead(tmp_path: Path) -> None:
    with _two_copies(tmp_path, 500, 4) as (base, ahead):
        twin = Vantage("twin", base.url + "/")  # the same API root, named apart
        mirror = Vantage("mirror", ahead.url)
        alerts, status = _run_once(_v1_config(base, tmp_path / "m.duckdb", twin, mirror))
        origin = base.v1_origin
    assert alerts == []
    assert status["frontier"] == 500 and status["failures"] == 0
    # The proof 500 -> 504 came from the mirror (ahead) and verified.
    assert _sources(tmp_path / "m.duckdb", origin) == {
        base.url: {500},
        base.url + "/": {500},
        ahead.url: {504},
    }


def test_consistent_vantage_behind(tmp_path: Path) -> None:
    with _two_copies(tmp_path, 500, 4) as (base, ahead):
        cfg = _v1_config(ahead, tmp_path / "m.duckdb", Vantage("old-mirror", base.url))
        alerts, status = _run_once(cfg)
    assert alerts == []
    assert status["frontier"] == 504
    # The proof 500 -> 504 came from our log (ahead) and verified.
    assert _sources(tmp_path / "m.duckdb", ahead.v1_origin) == {ahead.url: {504}, base.url: {500}}


def test_forked_vantage_same_size_is_a_split_view(tmp_path: Path) -> None:
    with start_server(seed=1000) as srv:
        srv.fork(at=400, extra=600, readers="header")
        fork = Vantage("fork", srv.url, FORK_VIEW)
        alerts, status = _run_once(_v1_config(srv, tmp_path / "m.duckdb", fork))
        ours = httpx.get(srv.url + "/api/v1/log").json()
    assert [a["kind"] for a in alerts] == [AlertKind.SPLIT_VIEW.value]
    ev = alerts[0]["evidence"]
    verifier = parse_verifier_key(srv.v1_vkey)
    old, new = open_checkpoint(ev["old"], verifier), open_checkpoint(ev["new"], verifier)
    assert old.size == new.size == ev["old_size"] == ev["new_size"] == 1000
    assert old.root != new.root
    assert old.root.hex() == ours["rootHash"] and ev["old"] == ours["signedTreeHead"]
    assert status["frontier"] == 1000  # our own log is still followed
    assert _sources(tmp_path / "m.duckdb", srv.v1_origin) == {srv.url: {1000}}


@pytest.mark.parametrize(("extra", "ahead"), [(700, True), (300, False)])
def test_forked_vantage_other_size_alert_rechecks_offline(
    tmp_path: Path, extra: int, ahead: bool
) -> None:
    with start_server(seed=1000) as srv:
        srv.fork(at=400, extra=extra, readers="header")
        fork = Vantage("fork", srv.url, FORK_VIEW)
        alerts, status = _run_once(_v1_config(srv, tmp_path / "m.duckdb", fork))
    assert [a["kind"] for a in alerts] == [AlertKind.SPLIT_VIEW.value]
    ev = alerts[0]["evidence"]
    sizes = (1000, 400 + extra) if ahead else (400 + extra, 1000)
    assert (ev["old_size"], ev["new_size"]) == sizes
    # The same keys as a tile log's split view, bar the tiles a v1 log has none of.
    assert set(ev) == {
        "old",
        "new",
        "old_size",
        "new_size",
        "old_root",
        "new_root",
        "source",
        "old_source",
        "proof",
        "check",
    }
    assert ev["check"] == "proof does not rebuild the old root"
    _recheck_offline(alerts[0], srv.v1_vkey)
    assert status["frontier"] == 1000


def test_unreachable_vantage_is_no_alert(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    with start_server(seed=300) as srv, _closed_port() as url:
        alerts, status = _run_once(_v1_config(srv, tmp_path / "m.duckdb", Vantage("gone", url)))
        origin = srv.v1_origin
    assert alerts == []
    assert status["failures"] == 0 and status["frontier"] == 300
    assert any("vantage gone unreachable" in r.getMessage() for r in caplog.records)
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(origin) == [(0, 300)]
    assert url not in _sources(tmp_path / "m.duckdb", origin)


def test_proof_fetch_failure_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    with _two_copies(tmp_path, 200, 3) as (base, ahead):
        ahead.set_faults({"action": "status", "status": 503, "path_prefix": "/api/v1/log/proof"})
        mirror = Vantage("mirror", ahead.url)
        alerts, status = _run_once(_v1_config(base, tmp_path / "m.duckdb", mirror))
        origin = base.v1_origin
    assert alerts == []
    assert status["failures"] == 0 and status["frontier"] == 200
    assert any("vantage mirror: no consistency proof" in r.getMessage() for r in caplog.records)
    assert ahead.url not in _sources(tmp_path / "m.duckdb", origin)  # not proved, not seen


def test_bad_vantage_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    with _two_copies(tmp_path, 200, 3) as (base, ahead), start_server(seed=5) as other:
        good_ahead = httpx.get(ahead.url + "/api/v1/log").content
        garbage = {"/api/v1/log": b'{"treeSize": 12, "rootHash'}
        bad_note = json.loads(good_ahead)
        bad_note["signedTreeHead"] = "not a signed note\n"
        proofs = {
            "/api/v1/log": good_ahead,
            "/api/v1/log/proof": b'{"rootHash": "00", "hashes": ["zz"]}',
        }
        empty_proof = {"/api/v1/log": good_ahead, "/api/v1/log/proof": b'{"hashes": []}'}
        with (
            _fixed_answers(garbage) as garbage_url,
            _fixed_answers({"/api/v1/log": json.dumps(bad_note).encode()}) as bad_note_url,
            _fixed_answers(proofs) as bad_proof_url,
            _fixed_answers(empty_proof) as empty_proof_url,
        ):
            vantage = (
                Vantage("garbage", garbage_url),
                Vantage("bad-note", bad_note_url),
                Vantage("other-key", other.url),  # another log's head, validly signed
                Vantage("bad-proof", bad_proof_url),
                Vantage("empty-proof", empty_proof_url),
            )
            alerts, status = _run_once(_v1_config(base, tmp_path / "m.duckdb", *vantage))
        origin = base.v1_origin
    # Unparsable answers are warnings; a head under another key and proofs that do
    # not parse or verify are alerts; the round completes either way.
    messages = [r.getMessage() for r in caplog.records]
    assert any("vantage garbage answers no usable checkpoint" in m for m in messages)
    assert any("vantage bad-note answers no usable checkpoint" in m for m in messages)
    by_source = {a["evidence"]["source"]: a for a in alerts}
    assert sorted(by_source) == sorted([other.url, bad_proof_url, empty_proof_url])
    assert by_source[other.url]["kind"] == AlertKind.ENTRY_VERIFICATION.value
    note = bytes.fromhex(by_source[other.url]["evidence"]["note"]).decode()
    assert note.startswith(f"{other.v1_origin}\n5\n")  # the other log's signed head
    assert by_source[bad_proof_url]["kind"] == AlertKind.ENTRY_VERIFICATION.value
    assert "does not parse" in by_source[bad_proof_url]["summary"]
    split = by_source[empty_proof_url]
    assert split["kind"] == AlertKind.SPLIT_VIEW.value
    assert split["evidence"]["proof"] == [] and split["evidence"]["check"].startswith("proof has 0")
    assert status["failures"] == 0 and status["frontier"] == 200
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(origin) == [(0, 200)]
    assert _sources(tmp_path / "m.duckdb", origin) == {base.url: {200}}
