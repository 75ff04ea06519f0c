"""Durability: a kill -9 during integration loses no acknowledged entry, and a
crash between writing tiles and publishing never exposes a checkpoint ahead of them."""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from rekorkit.checkpoint import open_checkpoint
from rekorkit.entries.canonical import hashedrekord_v002_request
from rekorkit.merkle import leaf_hash, root, verify_consistency
from rekorkit.note import parse_verifier_key
from rekorkit.server.log import TransparencyLog
from rekorkit.testing import LocalRekor, start_server

KEY = ec.generate_private_key(ec.SECP256R1())


def _requests(tag: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        d = hashlib.sha256(f"{tag}/{i}".encode()).digest()
        sig = KEY.sign(d, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        out.append(hashedrekord_v002_request(d, sig, KEY.public_key()))
    return out


def _all_leaf_hashes(data_dir: Path, size: int) -> np.ndarray:
    log = TransparencyLog(data_dir)
    try:
        assert log.state.size == size
        tiles = [log.read_tile(0, t, min(256, size - t * 256)) for t in range((size + 255) // 256)]
        return np.frombuffer(b"".join(tiles), np.uint8).reshape(-1, 32)
    finally:
        log.close()


def _checkpoint(srv: LocalRekor) -> tuple[int, bytes]:
    data = httpx.get(srv.url + "/checkpoint", timeout=10).content
    cp = open_checkpoint(data, parse_verifier_key(srv.checkpoint_vkey), origin=srv.origin)
    return cp.checkpoint.size, cp.checkpoint.root


def test_kill_9_during_integration_keeps_every_acknowledged_entry(tmp_path: Path) -> None:
    data = tmp_path / "log"
    reqs = _requests("crash", 3000)
    srv = start_server(data, subprocess=True, batch_wait=0.005, integration_delay=0.005)
    acked: list[tuple[int, bytes, int, bytes]] = []  # index, body, tree size, root
    lock = threading.Lock()
    stop = threading.Event()

    def worker(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            for req in reqs[k::4]:
                if stop.is_set():
                    return
                try:
                    r = c.post("/api/v2/log/entries", json=req)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    tle = r.json()
                    proof = tle["inclusionProof"]
                    with lock:
                        acked.append(
                            (
                                int(tle["logIndex"]),
                                base64.b64decode(tle["canonicalizedBody"]),
                                int(proof["treeSize"]),
                                base64.b64decode(proof["rootHash"]),
                            )
                        )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    # Kill while submissions are in flight (each batch sleeps 5 ms inside integration).
    deadline = 200
    while deadline and len(acked) < 300:
        stop.wait(0.02)
        deadline -= 1
    srv.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 100, "too few submissions before the kill to test anything"

    srv2 = start_server(data, subprocess=True)
    try:
        size, new_root = _checkpoint(srv2)
        assert size >= max(a[0] for a in acked) + 1
        # Every acknowledged tree head is consistent with the recovered one.
        last = max(acked, key=lambda a: a[2])
        proof = httpx.get(
            srv2.url + "/api/v1/log/proof", params={"firstSize": last[2], "lastSize": size}
        ).json()
        verify_consistency(
            last[2], size, last[3], new_root, [bytes.fromhex(h) for h in proof["hashes"]]
        )
        # The log keeps working after the restart.
        r = httpx.post(srv2.url + "/api/v2/log/entries", json=_requests("after", 1)[0], timeout=10)
        assert r.status_code == 201 and int(r.json()["logIndex"]) == size
    finally:
        srv2.stop()
    leaves = _all_leaf_hashes(data, size + 1)
    assert root(leaves[:size]) == new_root
    for index, body, _, _ in acked:
        assert leaves[index].tobytes() == leaf_hash(body)


def test_crash_before_publish_rolls_back_to_the_checkpoint(
    tmp_path: Path, monkeypatch: Any
) -> None:
    log = TransparencyLog(tmp_path)
    log.integrate([b'{"n":%d}' % i for i in range(300)])
    published = log.state

    # Crash after the tiles, bundles and index rows are written but before the checkpoint.
    def boom(data: bytes, name: str = "checkpoint") -> None:
        raise OSError("power cut")

    monkeypatch.setattr(log.store, "publish_checkpoint", boom)
    with pytest.raises(OSError):
        log.integrate([b'{"m":%d}' % i for i in range(500)])
    assert (tmp_path / "tiles" / "tile" / "0" / "002").exists()  # written past the checkpoint
    log.close()

    reopened = TransparencyLog(tmp_path)
    assert reopened.state.size == published.size and reopened.state.root == published.root
    assert not (tmp_path / "tiles" / "tile" / "0" / "002").exists()
    assert not (tmp_path / "tiles" / "tile" / "entries" / "001").exists()
    assert reopened.index.count() == published.size
    # The same entries can be appended again at the same positions.
    results, _ = reopened.integrate([b'{"m":%d}' % i for i in range(500)])
    assert [r.index for r in results] == list(range(300, 800))
    assert not any(r.duplicate for r in results)
    reopened.close()


def test_lost_index_is_rebuilt_from_bundles(tmp_path: Path) -> None:
    log = TransparencyLog(tmp_path)
    leaves = [b'{"k":%d}' % i for i in range(700)]
    log.integrate(leaves)
    log.close()
    (tmp_path / "index.duckdb").unlink()
    reopened = TransparencyLog(tmp_path)
    assert reopened.index.count() == 700
    results, _ = reopened.integrate(leaves[:5])
    assert all(r.duplicate for r in results)
    reopened.close()
