"""``rekorkit verify`` against the project's own log server (``rekorkit serve``) on loopback.

v2 tiles and v1 REST ranges, network faults retried by the client policy, an
interrupted run resumed, and the server's fork mode caught as a divergence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rekorkit.cli import main
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server

SEEDED = 1500


@pytest.fixture
def srv() -> Iterator[LocalRekor]:
    with start_server(seed=SEEDED, fsync=False) as s:
        yield s


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    status = main(["verify", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_v2_and_v1_ranges_verify(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.duckdb")
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0, report
    assert report["api"] == "v2" and report["entries"] == SEEDED and report["origin"] == srv.origin
    status, report = verify(
        capsys,
        srv.url,
        "--api",
        "v1",
        "--key",
        srv.v1_vkey,
        "--db",
        db,
        "--from",
        "100",
        "--to",
        "160",
    )
    assert status == 0, report
    assert report["api"] == "v1" and report["entries"] == 60
    with DuckDBStore(db, read_only=True) as store:
        assert store.count(srv.origin) == SEEDED
        assert store.count(srv.v1_origin) == 60
        e = store.entry(srv.v1_origin, 120)
        v2 = store.entry(srv.origin, 120)
        assert e is not None and v2 is not None
        assert e.body == v2.body and e.leaf_hash == v2.leaf_hash  # the same log through both APIs
        assert e.integrated_time is not None and e.global_index == 120
        assert e.kind in {"dsse", "hashedrekord"}


def test_faults_are_retried(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.set_faults(
        {"action": "status", "status": 503, "count": 3, "path_prefix": "/tile/entries/"},
        {
            "action": "status",
            "status": 429,
            "count": 1,
            "retry_after": 0,
            "path_prefix": "/tile/0/",
        },
        {"action": "truncate", "count": 1, "path_prefix": "/tile/entries/001"},
    )
    status, report = verify(
        capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", str(tmp_path / "f.duckdb")
    )
    assert status == 0, report
    assert report["entries"] == SEEDED


def test_interrupted_run_resumes(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "r.duckdb")
    srv.set_faults({"action": "status", "status": 500, "path_prefix": "/tile/entries/003"})
    status, report = verify(
        capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db, "--concurrency", "1"
    )
    assert status == 2 and report["error"] == "network error"
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, 768)]  # bundles 0-2 verified and kept
    srv.clear_faults()
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0 and report["range"] == [768, SEEDED]
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, SEEDED)]


def test_fork_mode_is_a_divergence(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "k.duckdb")
    status, _ = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0
    srv.fork(at=SEEDED - 200, extra=300)
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 1 and report["type"] == "DivergenceError", report
    assert report["evidence"]["old_size"] == SEEDED
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, SEEDED)]
        assert [c.size for c in store.checkpoints(srv.origin)] == [SEEDED]
