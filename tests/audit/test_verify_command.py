"""``rekorkit verify``: exit statuses, JSON and table reports, evidence, resume."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rekorkit import tiles
from rekorkit.cli import main
from rekorkit.note import Ed25519Signer
from rekorkit.store.duckdb import DuckDBStore
from test_verify import ORIGIN, StaticServer, TileLog, entries


@pytest.fixture
def log(tmp_path: Path) -> TileLog:
    lg = TileLog(tmp_path / "log", Ed25519Signer.generate(ORIGIN))
    lg.append(entries(600))
    return lg


@pytest.fixture
def server(log: TileLog) -> Iterator[StaticServer]:
    srv = StaticServer(log.root)
    yield srv
    srv.close()


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    status = main(["verify", *argv, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def test_verified_run_exits_0_and_resumes(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "a.duckdb")
    status, report = verify(capsys, server.url, "--key", log.vkey, "--db", db)
    assert status == 0 and report["ok"] is True
    assert report["entries"] == 600 and report["range"] == [0, 600] and report["api"] == "v2"
    assert report["root_hash"] == log.appender.root().hex()
    log.append(entries(100, 600))
    status, report = verify(capsys, server.url, "--key", log.vkey, "--db", db)
    assert status == 0 and report["range"] == [600, 700] and report["previous_size"] == 600
    with DuckDBStore(db, read_only=True) as store:
        assert store.count(ORIGIN) == 700


def test_table_report(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["verify", server.url, "--key", log.vkey, "--no-store", "--to", "300"])
    out = capsys.readouterr().out
    assert status == 0
    assert "verified" in out and "300" in out and "--no-store" in out


def test_no_store_writes_no_file(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "none.duckdb"
    status, report = verify(capsys, server.url, "--key", log.vkey, "--db", str(db), "--no-store")
    assert status == 0 and report["stored"] == 0 and report["db"] is None
    assert not db.exists()


def test_pem_key_file(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = log.signer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = tmp_path / "log.pem"
    key.write_bytes(pem)
    status, report = verify(capsys, server.url, "--key", str(key), "--origin", ORIGIN, "--no-store")
    assert status == 0 and report["entries"] == 600


def test_corrupted_bundle_exits_1_with_evidence(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = log.root / tiles.entries_path(1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x20  # last entry of bundle 1: index 511
    path.write_bytes(bytes(data))
    db = str(tmp_path / "c.duckdb")
    status, report = verify(capsys, server.url, "--key", log.vkey, "--db", db)
    assert status == 1 and report["ok"] is False and report["type"] == "TileError"
    ev = report["evidence"]
    assert ev["entry_index"] == 511 and ev["index"] == 1 and ev["level"] == 0
    assert len(ev["expected"]) == 64 and ev["expected"] != ev["actual"]  # hex hashes
    with DuckDBStore(db, read_only=True) as store:
        assert all(end <= 256 for _, end in store.verified_ranges(ORIGIN))


def test_failure_message_on_stderr(
    log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Ed25519Signer.generate(ORIGIN).verifier().vkey
    status = main(["verify", server.url, "--key", other, "--no-store"])
    err = capsys.readouterr().err
    assert status == 1
    assert "verification failed" in err and "SignatureError" in err


def test_usage_and_network_errors_exit_2(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = verify(capsys, server.url, "--key", "not a key", "--no-store")
    assert status == 2 and report["error"] == "usage error"
    status, report = verify(capsys, server.url, "--key", log.vkey, "--no-store", "--to", "601")
    assert status == 2 and "601" in report["message"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, report = verify(capsys, f"http://127.0.0.1:{port}", "--key", log.vkey, "--no-store")
    assert status == 2 and report["error"] == "network error"
    status = main(["verify", server.url, "--no-store", "--key", log.vkey, "--concurrency", "0"])
    assert status == 2
    assert main(["verify"]) == 2  # argparse: URL missing


def test_derive_level0_tiles_flag(
    tmp_path: Path, log: TileLog, server: StaticServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = verify(
        capsys, server.url, "--key", log.vkey, "--no-store", "--derive-level0-tiles"
    )
    assert status == 0 and report["entries"] == 600
