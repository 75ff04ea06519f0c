"""Many concurrent submitters: one batch per checkpoint, every proof verifies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from rekorkit.entries.canonical import hashedrekord_v001_request, hashedrekord_v002_request
from rekorkit.merkle import leaf_hash, verify_inclusion
from rekorkit.testing import start_server

KEY = ec.generate_private_key(ec.SECP256R1())


def _signed(tag: str) -> tuple[bytes, bytes]:
    d = hashlib.sha256(tag.encode()).digest()
    return d, KEY.sign(d, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_concurrent_v1_and_v2_submissions_are_batched_and_verify(tmp_path: Path) -> None:
    n = 120
    v2 = [hashedrekord_v002_request(*_signed(f"c2/{i}"), KEY.public_key()) for i in range(n)]
    v1 = []
    for i in range(n):
        d, sig = _signed(f"c1/{i}")
        v1.append(hashedrekord_v001_request(sig, KEY.public_key(), d))

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            jobs = [c.post("/api/v2/log/entries", json=r) for r in v2]
            jobs += [c.post("/api/v1/log/entries", json=r) for r in v1]
            jobs += [c.post("/api/v2/log/entries", json=v2[0]) for _ in range(5)]
            return await asyncio.gather(*jobs)

    with start_server(tmp_path / "log", batch_wait=0.01) as srv:
        responses = asyncio.run(run(srv.url))
        final = int(httpx.get(srv.url + "/checkpoint").text.split("\n")[1])
    created = [r for r in responses if r.status_code == 201]
    conflicts = [r for r in responses if r.status_code == 409]
    # v2[0] was sent six times: exactly one of them is created.
    assert len(created) == 2 * n and len(conflicts) == 5
    indices = set()
    sizes = set()
    for r in created:
        body = r.json()
        if "logIndex" in body:  # v2
            proof = body["inclusionProof"]
            index, size = int(body["logIndex"]), int(proof["treeSize"])
            leaf = base64.b64decode(body["canonicalizedBody"])
            hashes_ = [base64.b64decode(h) for h in proof["hashes"]]
            root = base64.b64decode(proof["rootHash"])
        else:  # v1
            ((_, entry),) = body.items()
            proof = entry["verification"]["inclusionProof"]
            index, size = proof["logIndex"], proof["treeSize"]
            leaf = base64.b64decode(entry["body"])
            hashes_ = [bytes.fromhex(h) for h in proof["hashes"]]
            root = bytes.fromhex(proof["rootHash"])
        verify_inclusion(leaf_hash(leaf), index, size, hashes_, root)
        indices.add(index)
        sizes.add(size)
    assert indices == set(range(2 * n)) and final == 2 * n
    assert len(sizes) < 2 * n / 4  # entries shared checkpoints: integration was batched


def test_integration_delay_lets_clients_time_out_then_the_entry_is_there(tmp_path: Path) -> None:
    req = hashedrekord_v002_request(*_signed("slow"), KEY.public_key())
    with start_server(tmp_path / "slow", integration_delay=0.6) as srv:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/api/v2/log/entries", json=req, timeout=0.2)
        # The submission was accepted and is integrated anyway: a retry is a 409.
        r = httpx.post(srv.url + "/api/v2/log/entries", json=req, timeout=10)
        assert r.status_code == 409 and r.headers["x-log-index"] == "0"
