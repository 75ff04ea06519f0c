"""``rekorkit serve`` from the command line."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from rekorkit.checkpoint import open_checkpoint
from rekorkit.cli import main
from rekorkit.note import parse_verifier_key
from rekorkit.testing import start_server


def test_faults_refused_off_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--data", str(tmp_path), "--host", "0.0.0.0", "--faults"])
    assert code == 2
    assert "loopback" in capsys.readouterr().err
    assert not (tmp_path / "log.json").exists()  # refused before touching the data dir


def test_unusable_data_dir_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["serve", "--data", str(blocker), "--port", "0"]) == 2
    assert "error" in capsys.readouterr().err


def test_serve_prints_identity_and_serves(tmp_path: Path) -> None:
    with start_server(tmp_path / "cli", subprocess=True, origin="log.test", seed=300) as srv:
        assert srv.origin == "log.test"
        assert srv.v1_origin.startswith("log.test - ")
        assert srv.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert srv.process is not None and srv.process.poll() is None
        data = httpx.get(srv.url + "/checkpoint").content
        cp = open_checkpoint(data, parse_verifier_key(srv.checkpoint_vkey), origin="log.test")
        assert cp.checkpoint.size == 300
        info = httpx.get(srv.url + "/api/v1/log").json()
        v1 = open_checkpoint(
            info["signedTreeHead"].encode(), parse_verifier_key(srv.v1_vkey), origin=srv.v1_origin
        )
        assert v1.checkpoint.root == cp.checkpoint.root
    # Restarting on the same directory keeps the identity and the tree.
    with start_server(tmp_path / "cli", subprocess=True, read_only=True) as again:
        assert again.origin == "log.test" and again.v1_log_id == srv.v1_log_id
        assert httpx.get(again.url + "/checkpoint").content.split(b"\n")[1] == b"300"
        assert httpx.post(again.url + "/api/v2/log/entries", json={}).status_code == 405
