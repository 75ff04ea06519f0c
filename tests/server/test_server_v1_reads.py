"""Batched v1 reads: times and SETs kept per bundle, the fast LogEntry text."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from rekorkit.checkpoint import open_checkpoint
from rekorkit.entries import LogEntry, entry_set_payload, verify_set
from rekorkit.entries.canonical import hashedrekord_v001_request
from rekorkit.note import parse_verifier_key
from rekorkit.server.app import LogService, create_app, open_service
from rekorkit.server.v1 import log_entries_json, log_entry
from rekorkit.server.v1_reads import V1EntryReader
from rekorkit.testing import LocalRekor, start_server
from rekorkit.trust import load_public_key


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LogService]:
    svc = open_service(tmp_path / "log", fsync=False)
    yield svc
    svc.close()


def test_fast_v1_json_equals_the_dict_form(service: LogService) -> None:
    log = service.log
    log.integrate([b"leaf %d" % i for i in range(1)], now=1_700_000_000)
    state = log.state
    (text,) = log_entries_json(service, [0], state)
    _, expected = log_entry(
        service, 0, log.leaf(0), 1_700_000_000, [], 1, state.root, state.v1_checkpoint
    )
    assert json.loads(text) == expected  # a one-leaf tree: an empty proof
    log.integrate([b"leaf %d" % i for i in range(1, 600)], now=1_700_000_001)
    state = log.state
    builder = log.proof_builder()
    indices = [0, 7, 255, 256, 599, 7]  # across bundles, the partial edge one, a repeat
    for index, text in zip(indices, log_entries_json(service, indices, state), strict=True):
        t = 1_700_000_000 if index == 0 else 1_700_000_001
        _, expected = log_entry(
            service,
            index,
            log.leaf(index),
            t,
            builder.inclusion_proof(index),
            state.size,
            state.root,
            state.v1_checkpoint,
        )
        assert json.loads(text) == expected, index


def test_sets_are_signed_once_and_verify(service: LogService) -> None:
    log = service.log
    log.integrate([b"entry %d" % i for i in range(300)], now=1_700_000_000)
    reader = service.v1_reads
    first = reader.read([3, 290, 3], log.state.size)
    assert reader.signed == 2  # the repeat in one request is signed once
    again = reader.read([290, 3], log.state.size)
    assert reader.signed == 2 and again.sets == [first.sets[1], first.sets[0]]
    # Deterministic ECDSA: a fresh reader (say, after a restart) signs the same bytes.
    fresh = V1EntryReader(log).read([3, 290], log.state.size)
    assert fresh.sets == first.sets[:2]
    key = log.identity.ecdsa.public_key()
    for text in log_entries_json(service, [3, 290], log.state):
        entry = LogEntry.from_json(text)
        assert entry.signed_entry_timestamp is not None
        verify_set(entry_set_payload(entry), entry.signed_entry_timestamp, key)


def test_edge_bundle_times_follow_the_log(service: LogService) -> None:
    log = service.log
    log.integrate([b"a %d" % i for i in range(10)], now=1_000)
    reader = service.v1_reads
    assert reader.read([9], log.state.size).times == [1_000]
    # The same (partial) bundle grows: its new rows are read, the kept ones stay.
    log.integrate([b"b %d" % i for i in range(5)], now=2_000)
    recs = reader.read([9, 14], log.state.size)
    assert recs.times == [1_000, 2_000]
    assert recs.leaves == [b"a 9", b"b 4"]
    with pytest.raises(IndexError):
        reader.read([15], log.state.size)


def test_kept_bundles_are_bounded(service: LogService) -> None:
    log = service.log
    log.integrate([b"x %d" % i for i in range(256 * 3)], now=5)
    reader = V1EntryReader(log, max_bundles=2)
    reader.read([0, 256, 512], log.state.size)
    assert reader.signed == 3
    reader.read([512, 256], log.state.size)  # still kept
    assert reader.signed == 3
    reader.read([0], log.state.size)  # bundle 0 was dropped: signed again
    assert reader.signed == 4
    with pytest.raises(ValueError):
        V1EntryReader(log, max_bundles=0)
    with pytest.raises(ValueError):
        V1EntryReader(log, max_proof_tiles=0)


def test_proofs_from_tiles_equal_the_proof_builder(service: LogService) -> None:
    log = service.log
    done = 0
    # Sizes at, just past and short of tile boundaries, and past a level-1 tile.
    for grow in (1, 255, 1, 255, 1, 300, 65536 - 813, 1, 700):
        log.integrate([b"e %d" % (done + i) for i in range(grow)])
        done += grow
        size = log.state.size
        reader = V1EntryReader(log, max_proof_tiles=2)
        builder = log.proof_builder(size)
        picks = sorted({0, 1, 255, 256, size // 2, size - 257, size - 1} & set(range(size)))
        picks += [picks[0], size - 1]  # repeats, and a tile asked for again after others
        got = reader.proofs(picks, size)
        assert got == [b"".join(builder.inclusion_proof(i)).hex() for i in picks], size


def test_kept_says_when_a_read_does_no_blocking_work(service: LogService) -> None:
    log = service.log
    log.integrate([b"k %d" % i for i in range(300)], now=9)
    reader = service.v1_reads
    size = log.state.size
    assert not reader.kept([1, 260], size)
    reader.read([1], size)
    assert reader.kept([1], size) and not reader.kept([1, 260], size)
    reader.read([260], size)
    assert reader.kept([1, 260], size)
    assert not reader.kept([300], size) and not reader.kept([-1], size)


def _asgi_search(
    service: LogService, messages: list[dict[str, object]], length: int
) -> list[dict[str, object]]:
    """Drive the app's front door with a raw ASGI POST to /entries/retrieve."""
    app = create_app(service)
    sent: list[dict[str, object]] = []
    pending = iter(messages)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/log/entries/retrieve/",
        "headers": [(b"content-length", str(length).encode())],
        "query_string": b"",
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, object]:
        return next(pending, {"type": "http.disconnect"})

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_front_door_search_reads_bodies_with_the_limit(service: LogService) -> None:
    service.log.integrate([b"f %d" % i for i in range(20)], now=3)
    body = json.dumps({"logIndexes": [3, 19, 25]}).encode()
    chunks = [
        {"type": "http.request", "body": body[:7], "more_body": True},
        {"type": "http.request", "body": body[7:], "more_body": False},
    ]
    sent = _asgi_search(service, chunks, len(body))
    assert sent[0]["status"] == 200
    hits = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))  # type: ignore[misc]
    assert [next(iter(h.values()))["logIndex"] for h in hits] == [3, 19]  # 25: past the end
    # Over the limit: declared, or streamed past it without a length.
    limit = service.max_body
    assert _asgi_search(service, chunks, limit + 1)[0]["status"] == 413
    big = [{"type": "http.request", "body": b" " * (limit // 2 + 1), "more_body": True}] * 3
    assert _asgi_search(service, big, 0)[0]["status"] == 413
    # The client went away mid-body: nothing is sent, nothing raised.
    assert _asgi_search(service, chunks[:1], len(body)) == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
    with start_server(tmp_path_factory.mktemp("v1reads"), seed=300, fsync=False) as srv:
        yield srv


def test_one_checkpoint_per_size_signed_again_when_the_log_grows(server: LocalRekor) -> None:
    verifier = parse_verifier_key(server.v1_vkey)
    key = load_public_key(server.public_key_pem)
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def retrieve(indexes: list[int]) -> list[LogEntry]:
            r = client.post("/api/v1/log/entries/retrieve", json={"logIndexes": indexes})
            assert r.status_code == 200, r.text
            return [LogEntry.from_json(item) for item in r.json()]

        a, b = retrieve([1, 2]), retrieve([2, 299])
        cps = {e.inclusion_proof.checkpoint for e in a + b if e.inclusion_proof}
        assert len(cps) == 1  # one signed checkpoint for the size, reused
        assert a[1].signed_entry_timestamp == b[0].signed_entry_timestamp
        old = open_checkpoint(cps.pop().encode(), verifier)
        assert old.size == 300
        created = client.post(
            "/api/v1/log/entries",
            content=json.dumps(_proposed()),
            headers={"content-type": "application/json"},
        )
        assert created.status_code == 201, created.text
        (c,) = retrieve([2])
        assert c.inclusion_proof is not None and c.inclusion_proof.checkpoint is not None
        new = open_checkpoint(c.inclusion_proof.checkpoint.encode(), verifier)
        assert new.size == 301 and c.inclusion_proof.tree_size == 301
        # The entry's SET does not depend on the tree size: the kept one is served.
        assert c.signed_entry_timestamp == a[1].signed_entry_timestamp
        created_entry = LogEntry.from_json(created.json())
        (again,) = retrieve([created_entry.log_index])
        assert again.signed_entry_timestamp == created_entry.signed_entry_timestamp
        for e in (c, again):
            assert e.signed_entry_timestamp is not None
            verify_set(entry_set_payload(e), e.signed_entry_timestamp, key)


def _proposed() -> dict[str, object]:
    k = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(base64.b64encode(b"v1 reads")).digest()
    sig = k.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return hashedrekord_v001_request(sig, k.public_key(), digest)
