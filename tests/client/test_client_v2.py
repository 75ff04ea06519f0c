"""RekorV2Client / AsyncRekorV2Client over httpx.MockTransport: writes, tiles, proofs, lies."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import anyio
import httpx
import pytest
from client_fakes import FakeV2Log, artifact_key, other_ed25519_signer, v2_request
from rekorkit.client import RetryPolicy
from rekorkit.client.v2 import AsyncRekorV2Client, RekorV2Client
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries.canonical import canonicalize_v2
from rekorkit.entries.dsse import pae, sign_envelope
from rekorkit.errors import (
    CheckpointError,
    DivergenceError,
    InclusionError,
    NotFoundError,
    RekorAPIError,
    SignatureError,
)

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)


@pytest.fixture
def log() -> FakeV2Log:
    return FakeV2Log()


def make(log: FakeV2Log, **kw: Any) -> RekorV2Client:
    kw.setdefault("log", log.log)
    return RekorV2Client(f"http://{log.origin}", transport=log.transport(), retry=NO_WAIT, **kw)


def fill(log: FakeV2Log, n: int, start: int = 1000) -> None:
    for i in range(n):
        log.bodies.append(canonicalize_v2(v2_request(start + i)))


def test_submit_verifies_and_tracks(log: FakeV2Log) -> None:
    fill(log, 3)
    with make(log) as c:
        e = c.submit(v2_request(1))
        assert e.log_index == 3 and e.kind == "hashedrekord"
        assert e.canonicalized_body == canonicalize_v2(v2_request(1))
        latest = c.tracker.latest(log.origin)
        assert latest is not None and latest.size == 4


def test_duplicate_resolves_from_tiles(log: FakeV2Log) -> None:
    fill(log, 300)
    c = make(log)
    first = c.submit(v2_request(1))
    again = c.submit(v2_request(1))
    assert again.log_index == first.log_index == 300
    assert again.canonicalized_body == first.canonicalized_body
    assert again.inclusion_proof is not None and again.inclusion_proof.tree_size == 301
    paths = [r.url.path for r in log.requests]
    assert "/checkpoint" in paths and any(p.startswith("/tile/entries/001") for p in paths)


def test_entries_from_tiles_full_partial_and_gzip(log: FakeV2Log) -> None:
    fill(log, 600)
    log.gzip_bundles = True
    c = make(log)
    for i in (0, 255, 256, 511, 512, 599):
        e = c.get_entry(i)
        assert e.log_index == i and e.canonicalized_body == log.bodies[i]
    with pytest.raises(NotFoundError):
        c.get_entry(600)


def test_partial_tiles_deleted_fall_back(log: FakeV2Log) -> None:
    fill(log, 300)
    c = make(log)
    c.checkpoint()
    fill(log, 300, start=5000)  # tile 0/001 is now full; its old partial is gone
    log.drop_partials = True
    cp = c.checkpoint()  # consistency 300 -> 600 built from tiles
    assert cp.size == 600
    assert any(r.url.path == "/tile/0/001" for r in log.requests)


def test_consistency_from_tiles_and_fork(log: FakeV2Log) -> None:
    fill(log, 40)
    c = make(log)
    c.checkpoint()
    fill(log, 10, start=3000)
    assert c.checkpoint().size == 50
    log.bodies[5] = b'{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{}}'
    fill(log, 1, start=4000)
    with pytest.raises(DivergenceError) as info:
        c.checkpoint()
    assert info.value.evidence["old_size"] == 50 and info.value.evidence["new_size"] == 51


def test_rollback_is_divergence(log: FakeV2Log) -> None:
    fill(log, 20)
    c = make(log)
    c.checkpoint()
    log.frozen_size = 10
    with pytest.raises(DivergenceError, match="rolled back"):
        c.checkpoint()


def test_checkpoint_signed_by_another_key(log: FakeV2Log) -> None:
    fill(log, 5)
    log.checkpoint_signer = other_ed25519_signer(log.origin)
    with pytest.raises(SignatureError):
        make(log).checkpoint()
    with pytest.raises(SignatureError):
        make(log).submit(v2_request(1))


def test_body_not_what_was_submitted(log: FakeV2Log) -> None:
    def swap(obj: dict[str, Any]) -> None:
        obj["canonicalizedBody"] = base64.b64encode(b'{"x":1}').decode()

    log.tamper = swap
    with pytest.raises(InclusionError, match="canonical form"):
        make(log).submit(v2_request(1))


def test_proof_that_does_not_verify(log: FakeV2Log) -> None:
    fill(log, 9)

    def bad(obj: dict[str, Any]) -> None:
        obj["inclusionProof"]["hashes"][0] = base64.b64encode(b"\0" * 32).decode()

    log.tamper = bad
    with pytest.raises(InclusionError):
        make(log).submit(v2_request(1))


def test_proof_tree_head_differs_from_checkpoint(log: FakeV2Log) -> None:
    fill(log, 9)

    def other_root(obj: dict[str, Any]) -> None:
        obj["inclusionProof"]["checkpoint"]["envelope"] = log.checkpoint(5)

    log.tamper = other_root
    with pytest.raises(CheckpointError):
        make(log).submit(v2_request(1))


def test_wrong_log_id(log: FakeV2Log) -> None:
    def other_id(obj: dict[str, Any]) -> None:
        obj["logId"]["keyId"] = base64.b64encode(b"\1" * 32).decode()

    log.tamper = other_id
    with pytest.raises(SignatureError, match="logId"):
        make(log).submit(v2_request(1))


def test_read_only_log_is_not_retried(log: FakeV2Log) -> None:
    calls = []

    def frozen(req: httpx.Request) -> httpx.Response | None:
        if req.method == "POST":
            calls.append(1)
            return httpx.Response(
                405, text="This log has been frozen, please switch to the latest log."
            )
        return None

    log.override = frozen
    with pytest.raises(RekorAPIError) as info:
        make(log).submit(v2_request(1))
    assert info.value.status == 405 and "frozen" in info.value.message
    assert calls == [1]


def test_v2_error_body_is_read(log: FakeV2Log) -> None:
    log.override = lambda req: (
        httpx.Response(
            400, json={"code": 3, "message": "invalid hashedrekord request", "details": []}
        )
        if req.method == "POST"
        else None
    )
    with pytest.raises(RekorAPIError) as info:
        make(log).submit(v2_request(1))
    assert (info.value.status, info.value.code) == (400, 3)


def test_dsse_as_hashedrekord(log: FakeV2Log) -> None:
    env = sign_envelope("application/vnd.in-toto+json", b'{"a":1}', artifact_key())
    e = make(log).submit_dsse(env, verifiers=[artifact_key().public_key()])
    assert e.log_index == 0
    spec = e.canonicalized_body.decode()
    assert (
        base64.b64encode(hashlib.sha256(pae(env.payload_type, env.payload)).digest()).decode()
        in spec
    )


def test_needs_a_key(log: FakeV2Log) -> None:
    with pytest.raises(ValueError, match="checkpoint key"):
        RekorV2Client("http://x", transport=log.transport())
    opts = VerifyOptions().without("checkpoint_signature")
    fill(log, 2)
    assert RekorV2Client("http://x", transport=log.transport(), verify=opts).checkpoint().size == 2


def test_public_key_with_local_style_verifier(log: FakeV2Log) -> None:
    """A key name that is not the URL host (like a local server) still gives the right log ID."""
    fill(log, 2)
    pem = log.log.public_key
    c = RekorV2Client(
        "http://127.0.0.1:9",
        public_key=spki_of(pem),
        verifier=log.signer.verifier(),
        transport=log.transport(),
    )
    assert c.submit(v2_request(2)).log_index == 2


def spki_of(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_async_twin(log: FakeV2Log) -> None:
    fill(log, 250)

    async def main() -> None:
        async with AsyncRekorV2Client(
            f"http://{log.origin}",
            log=log.log,
            transport=log.async_transport(),
            retry=NO_WAIT,
            max_concurrency=4,
        ) as c:
            subs = await c.submit_many([v2_request(i) for i in range(10)])
            assert sorted(e.log_index for e in subs) == list(range(250, 260))
            dup = await c.submit(v2_request(3))
            assert dup.canonicalized_body == subs[3].canonicalized_body
            assert (await c.get_entry(255)).canonicalized_body == log.bodies[255]
            assert (await c.checkpoint()).size == 260
            log.frozen_size = 100
            with pytest.raises(DivergenceError):
                await c.checkpoint()

    anyio.run(main)


def test_async_writes_in_flight_stay_within_the_bound(log: FakeV2Log) -> None:
    # Flows may outnumber writes (answered ones are checked while the next go
    # out), but never more than max_concurrency writes are in flight at once.
    fill(log, 10)
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        await request.aread()
        is_write = request.method == "POST"
        if is_write:
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.002)
        try:
            return log.handler(request)
        finally:
            in_flight -= is_write

    async def main() -> list[int]:
        async with AsyncRekorV2Client(
            f"http://{log.origin}",
            log=log.log,
            transport=httpx.MockTransport(handler),
            retry=NO_WAIT,
            max_concurrency=3,
        ) as c:
            done = await c.submit_many([v2_request(i) for i in range(20)])
            return [e.log_index for e in done]

    assert sorted(anyio.run(main)) == list(range(10, 30))
    assert peak == 3


@pytest.mark.parametrize("cls", [RekorV2Client, AsyncRekorV2Client])
def test_writes_and_tile_reads_share_one_session_config(cls: Any) -> None:
    """One settings value: writes wait for the log's batch, tile reads keep the reader's
    default, each has its own backends; an explicit timeout bounds both."""
    from rekorkit.client.resilience import Timeouts

    retry = RetryPolicy(max_attempts=2)
    unchecked = VerifyOptions().without("checkpoint_signature")
    kw: dict[str, Any] = {"verify": unchecked, "retry": retry, "http2": False}
    default = cls("http://write.test", read_url="http://read.test", **kw)
    explicit = cls("http://write.test", read_url="http://read.test", timeout=5.0, **kw)
    try:
        writes, reads = default._session, default.tiles._session
        assert writes.timeouts == Timeouts.for_v2_writes()
        assert reads.timeouts == Timeouts()
        assert writes.retry is reads.retry is retry
        assert writes.failover.base_urls == ("http://write.test",)
        assert reads.failover.base_urls == ("http://read.test",)
        assert explicit._session.timeouts == explicit.tiles._session.timeouts == Timeouts.of(5.0)
    finally:
        for client in (default, explicit):
            if isinstance(client, RekorV2Client):
                client.close()
            else:
                anyio.run(client.aclose)
