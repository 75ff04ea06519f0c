"""Split-view checks for Rekor v1 logs: a vantage point is another v1 API root."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit import merkle
from rekorkit.checkpoint import open_checkpoint
from rekorkit.errors import ConsistencyError
from rekorkit.monitor import (
    AlertKind,
    Vantage,
)
from rekorkit.note import parse_verifier_key
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import start_server
from vantage_support import (
    FORK_VIEW,
    closed_port,
    fixed_answers,
    run_once,
    sightings,
    two_copies,
    v1_config,
)


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
    with two_copies(tmp_path, 500, 4) as (base, ahead):
        twin = Vantage("twin", base.url + "/")  # the same API root, named apart
        mirror = Vantage("mirror", ahead.url)
        alerts, status = run_once(v1_config(base, tmp_path / "m.duckdb", twin, mirror))
        origin = base.v1_origin
    assert alerts == []
    assert status["frontier"] == 500 and status["failures"] == 0
    # The proof 500 -> 504 came from the mirror (ahead) and verified.
    assert sightings(tmp_path / "m.duckdb", origin) == {
        base.url: {500},
        base.url + "/": {500},
        ahead.url: {504},
    }


def test_consistent_vantage_behind(tmp_path: Path) -> None:
    with two_copies(tmp_path, 500, 4) as (base, ahead):
        cfg = v1_config(ahead, tmp_path / "m.duckdb", Vantage("old-mirror", base.url))
        alerts, status = run_once(cfg)
    assert alerts == []
    assert status["frontier"] == 504
    # The proof 500 -> 504 came from our log (ahead) and verified.
    assert sightings(tmp_path / "m.duckdb", ahead.v1_origin) == {ahead.url: {504}, base.url: {500}}


def test_forked_vantage_same_size_is_a_split_view(tmp_path: Path) -> None:
    with start_server(seed=1000) as srv:
        srv.fork(at=400, extra=600, readers="header")
        fork = Vantage("fork", srv.url, FORK_VIEW)
        alerts, status = run_once(v1_config(srv, tmp_path / "m.duckdb", fork))
        ours = httpx.get(srv.url + "/api/v1/log").json()
    assert [a["kind"] for a in alerts] == [AlertKind.SPLIT_VIEW.value]
    ev = alerts[0]["evidence"]
    verifier = parse_verifier_key(srv.v1_vkey)
    old, new = open_checkpoint(ev["old"], verifier), open_checkpoint(ev["new"], verifier)
    assert old.size == new.size == ev["old_size"] == ev["new_size"] == 1000
    assert old.root != new.root
    assert old.root.hex() == ours["rootHash"] and ev["old"] == ours["signedTreeHead"]
    assert status["frontier"] == 1000  # our own log is still followed
    assert sightings(tmp_path / "m.duckdb", srv.v1_origin) == {srv.url: {1000}}


@pytest.mark.parametrize(("extra", "ahead"), [(700, True), (300, False)])
def test_forked_vantage_other_size_alert_rechecks_offline(
    tmp_path: Path, extra: int, ahead: bool
) -> None:
    with start_server(seed=1000) as srv:
        srv.fork(at=400, extra=extra, readers="header")
        fork = Vantage("fork", srv.url, FORK_VIEW)
        alerts, status = run_once(v1_config(srv, tmp_path / "m.duckdb", fork))
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
    with start_server(seed=300) as srv, closed_port() as url:
        alerts, status = run_once(v1_config(srv, tmp_path / "m.duckdb", Vantage("gone", url)))
        origin = srv.v1_origin
    assert alerts == []
    assert status["failures"] == 0 and status["frontier"] == 300
    assert any("vantage gone unreachable" in r.getMessage() for r in caplog.records)
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(origin) == [(0, 300)]
    assert url not in sightings(tmp_path / "m.duckdb", origin)


def test_proof_fetch_failure_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    with two_copies(tmp_path, 200, 3) as (base, ahead):
        ahead.set_faults({"action": "status", "status": 503, "path_prefix": "/api/v1/log/proof"})
        mirror = Vantage("mirror", ahead.url)
        alerts, status = run_once(v1_config(base, tmp_path / "m.duckdb", mirror))
        origin = base.v1_origin
    assert alerts == []
    assert status["failures"] == 0 and status["frontier"] == 200
    assert any("vantage mirror: no consistency proof" in r.getMessage() for r in caplog.records)
    assert ahead.url not in sightings(tmp_path / "m.duckdb", origin)  # not proved, not seen


def test_bad_vantage_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rekorkit.monitor")
    with two_copies(tmp_path, 200, 3) as (base, ahead), start_server(seed=5) as other:
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
            fixed_answers(garbage) as garbage_url,
            fixed_answers({"/api/v1/log": json.dumps(bad_note).encode()}) as bad_note_url,
            fixed_answers(proofs) as bad_proof_url,
            fixed_answers(empty_proof) as empty_proof_url,
        ):
            vantage = (
                Vantage("garbage", garbage_url),
                Vantage("bad-note", bad_note_url),
                Vantage("other-key", other.url),  # another log's head, validly signed
                Vantage("bad-proof", bad_proof_url),
                Vantage("empty-proof", empty_proof_url),
            )
            alerts, status = run_once(v1_config(base, tmp_path / "m.duckdb", *vantage))
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
    assert sightings(tmp_path / "m.duckdb", origin) == {base.url: {200}}
