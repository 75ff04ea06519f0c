"""A misbehaving second vantage point never fails our log's round and raises no false alert.

A vantage point (mirror, proxy) is a third party: a checkpoint that does not
parse, tiles it cannot serve, or a tree that is empty on either side are
warnings or nothing, while tiles that do not hash to its signed root and a
forked tree stay alerts with evidence.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from monitor_support import config
from rekorkit import merkle, tiles
from rekorkit.checkpoint import open_checkpoint
from rekorkit.errors import ConsistencyError
from rekorkit.monitor import AlertKind, MonitorConfig, Vantage
from rekorkit.note import Ed25519Signer, parse_verifier_key, sign_note
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server
from vantage_support import (
    FORK_VIEW,
    fixed_answers,
    run_once,
    serve,
    sightings,
    two_copies,
    v1_config,
)

Messages = list[str]


def _log_signer(srv: LocalRekor) -> Ed25519Signer:
    """The local log's own checkpoint key: notes it signs verify as the log's."""
    pem = (srv.data_dir / "keys" / "checkpoint-ed25519.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    signer = Ed25519Signer.from_private_key(parse_verifier_key(srv.checkpoint_vkey).name, key)
    assert signer.verifier().vkey == srv.checkpoint_vkey
    return signer


@contextmanager
def _tampering_proxy(upstream: str, prefix: str) -> Iterator[str]:
    """A loopback proxy for ``upstream`` that flips the first byte of every body it
    serves under ``prefix`` (a mirror serving altered tiles); the rest passes as is."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            r = httpx.get(upstream + self.path, timeout=10)
            body = bytearray(r.content)
            if self.path.startswith(prefix) and r.status_code == 200 and body:
                body[0] ^= 0xFF
            self.send_response(r.status_code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(bytes(body))

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as url:
        yield url


def _warnings(caplog: pytest.LogCaptureFixture) -> Messages:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _stored(db: Path, origin: str) -> list[tuple[int, int]]:
    with DuckDBStore(db, read_only=True) as store:
        return store.verified_ranges(origin)


def _assert_round_completed(status: dict[str, Any], size: int) -> None:
    """Our log's round ran to the end: not failed, frontier at our checkpoint."""
    assert status["failures"] == 0 and status["last_error"] is None
    assert status["rounds"] == 1
    assert status["size"] == status["frontier"] == size


# -- 1. a /checkpoint that is no usable signed checkpoint ----------------------------


def _garbage(kind: str, srv: LocalRekor) -> bytes:
    if kind == "not-a-note":  # an error page from a proxy in front of the mirror
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
    if kind == "not-utf8":
        return b"\xff\xfe\x00\x81checkpoint\n\n\xe2\x80\x94 x \xc3\x28\n"
    # Signed by the log key itself, but the body is no checkpoint: no size line, or
    # an empty tree with another root than the empty root (RFC 9162 §2.1.1).
    if kind == "signed-bad-body":
        root = base64.b64encode(merkle.EMPTY_ROOT).decode()
        return sign_note(f"{srv.origin}\nnot a size\n{root}\n", _log_signer(srv))
    root = base64.b64encode(b"\x01" * 32).decode()
    return sign_note(f"{srv.origin}\n0\n{root}\n", _log_signer(srv))


@pytest.mark.parametrize(
    "kind", ["not-a-note", "not-utf8", "signed-bad-body", "signed-empty-tree-other-root"]
)
def test_v2_vantage_garbage_checkpoint_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    db = tmp_path / "m.duckdb"
    with start_server(seed=200) as srv:
        with fixed_answers({"/checkpoint": _garbage(kind, srv)}) as junk_url:
            alerts, status = run_once(config(srv, db, vantage=(Vantage("junk", junk_url),)))
        origin = srv.origin
    assert alerts == []
    _assert_round_completed(status, 200)
    assert _stored(db, origin) == [(0, 200)]
    assert any("vantage junk answers no usable checkpoint" in m for m in _warnings(caplog))
    assert not any("round failed" in m for m in _warnings(caplog))
    assert sightings(db, origin) == {srv.url: {200}}


def test_v2_vantage_note_under_another_key_is_an_alert(tmp_path: Path) -> None:
    """A well-formed note the log key did not sign stays the verification alert."""
    db = tmp_path / "m.duckdb"
    with start_server(seed=200) as srv, start_server(seed=5) as other:
        alerts, status = run_once(config(srv, db, vantage=(Vantage("other", other.url),)))
        origin = srv.origin
    assert [a["kind"] for a in alerts] == [AlertKind.ENTRY_VERIFICATION.value]
    ev = alerts[0]["evidence"]
    assert ev["error"] == "SignatureError" and ev["source"] == other.url
    note = open_checkpoint(bytes.fromhex(ev["note"]), parse_verifier_key(other.checkpoint_vkey))
    assert note.size == 5  # the other log's head, re-checkable offline
    _assert_round_completed(status, 200)
    assert _stored(db, origin) == [(0, 200)]


# -- 2. the vantage's tiles cannot be read -------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "status", "status": 503, "path_prefix": "/tile/"},
        {"action": "drop", "path_prefix": "/tile/"},
    ],
    ids=["http-503", "connection-dropped"],
)
def test_v2_vantage_tile_read_failure_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    db = tmp_path / "m.duckdb"
    with two_copies(tmp_path, 200, 3) as (base, ahead):
        ahead.set_faults(fault)
        alerts, status = run_once(config(base, db, vantage=(Vantage("mirror", ahead.url),)))
        origin = base.origin
    assert alerts == []
    _assert_round_completed(status, 200)
    assert _stored(db, origin) == [(0, 200)]
    assert any("vantage mirror: no consistency proof" in m for m in _warnings(caplog))
    assert ahead.url not in sightings(db, origin)  # not proved, so not recorded as seen


def test_v2_vantage_tampered_tile_is_still_an_alert(tmp_path: Path) -> None:
    db = tmp_path / "m.duckdb"
    with (
        two_copies(tmp_path, 200, 3) as (base, ahead),
        _tampering_proxy(ahead.url, "/tile/0/") as url,
    ):
        alerts, status = run_once(config(base, db, vantage=(Vantage("tampered", url),)))
        origin, vkey = base.origin, base.checkpoint_vkey
    assert [a["kind"] for a in alerts] == [AlertKind.ENTRY_VERIFICATION.value]
    assert "do not hash to its signed root" in alerts[0]["summary"]
    ev = alerts[0]["evidence"]
    assert ev["source"] == url and ev["new_size"] == 203
    # Offline: the tiles served hash to another root than the one the log signed.
    new = open_checkpoint(ev["new"], parse_verifier_key(vkey))
    served = {p: bytes.fromhex(h) for p, h in ev["tiles"].items()}
    root = tiles.ProofBuilder(new.size, lambda lv, i, w: served[tiles.TileID(lv, i, w).path]).root()
    assert root.hex() == ev["computed_root"] and root != new.root
    _assert_round_completed(status, 200)
    assert _stored(db, origin) == [(0, 200)]


@pytest.mark.parametrize("extra", [600, 700, 300], ids=["same-size", "ahead", "behind"])
def test_v2_vantage_fork_is_still_a_split_view(tmp_path: Path, extra: int) -> None:
    db = tmp_path / "m.duckdb"
    with start_server(seed=1000) as srv:
        srv.fork(at=400, extra=extra, readers="header")
        ours = httpx.get(srv.url + "/checkpoint").content
        alerts, status = run_once(config(srv, db, vantage=(Vantage("fork", srv.url, FORK_VIEW),)))
    assert [a["kind"] for a in alerts] == [AlertKind.SPLIT_VIEW.value]
    ev = alerts[0]["evidence"]
    verifier = parse_verifier_key(srv.checkpoint_vkey)
    old, new = open_checkpoint(ev["old"], verifier), open_checkpoint(ev["new"], verifier)
    assert {old.size, new.size} == {1000, 400 + extra}
    assert ours.decode() in (ev["old"], ev["new"])
    if extra == 600:
        assert old.root != new.root
    else:  # the tiles of the one ahead, which a third party rebuilds the proof from
        served = {p: bytes.fromhex(h) for p, h in ev["tiles"].items()}
        builder = tiles.ProofBuilder(new.size, lambda lv, i, w: served[tiles.TileID(lv, i, w).path])
        assert builder.root() == new.root
        with pytest.raises(ConsistencyError):
            merkle.verify_consistency(
                old.size, new.size, old.root, new.root, builder.consistency_proof(old.size)
            )
    _assert_round_completed(status, 1000)
    assert _stored(db, srv.origin) == [(0, 1000)]


# -- 3. an empty tree on either side ---------------------------------------------------


def _one_log(api: str, srv: LocalRekor, db: Path, vantage: Vantage) -> tuple[MonitorConfig, str]:
    if api == "v1":
        return v1_config(srv, db, vantage), srv.v1_origin
    return config(srv, db, vantage=(vantage,)), srv.origin


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_our_empty_log_and_a_vantage_with_entries(tmp_path: Path, api: str) -> None:
    """RFC 9162 §2.1.4: the empty tree is a prefix of every tree, no proof needed."""
    db = tmp_path / "m.duckdb"
    with two_copies(tmp_path, 0, 3) as (empty, ahead):
        cfg, origin = _one_log(api, empty, db, Vantage("mirror", ahead.url))
        alerts, status = run_once(cfg)
    assert alerts == []
    _assert_round_completed(status, 0)
    assert _stored(db, origin) == []
    # The vantage's head was compared and accepted as an extension of ours.
    assert sightings(db, origin) == {ahead.url: {3}}


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_our_log_with_entries_and_an_empty_vantage(tmp_path: Path, api: str) -> None:
    db = tmp_path / "m.duckdb"
    with two_copies(tmp_path, 0, 3) as (empty, ahead):
        cfg, origin = _one_log(api, ahead, db, Vantage("new-mirror", empty.url))
        alerts, status = run_once(cfg)
    assert alerts == []
    _assert_round_completed(status, 3)
    assert _stored(db, origin) == [(0, 3)]
    assert sightings(db, origin) == {ahead.url: {3}, empty.url: {0}}
