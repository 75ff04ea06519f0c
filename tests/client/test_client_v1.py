"""RekorV1Client / AsyncRekorV1Client over httpx.MockTransport: every check and edge case."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from client_fakes import FakeV1Log, other_ecdsa_signer, proposed_hashedrekord
from rekorkit import merkle
from rekorkit.client import RetryPolicy
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.v1 import AsyncRekorV1Client, RekorV1Client
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries import LogEntry
from rekorkit.errors import (
    CheckpointError,
    DivergenceError,
    InclusionError,
    MalformedError,
    NotFoundError,
    SignatureError,
)

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)


def make(log: FakeV1Log, **kw: Any) -> RekorV1Client:
    kw.setdefault("log", log.log)
    return RekorV1Client(f"http://{log.host}", transport=log.transport(), retry=NO_WAIT, **kw)


@pytest.fixture
def log() -> FakeV1Log:
    fake = FakeV1Log()
    for i in range(5):
        fake.add(json.dumps({"n": i}).encode())
    return fake


def paths(log: FakeV1Log) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in log.requests]


def test_submit_then_duplicate_is_idempotent(log: FakeV1Log) -> None:
    with make(log) as c:
        first = c.submit(proposed_hashedrekord(1))
        assert first.log_index == 5
        again = c.submit(proposed_hashedrekord(1))
    assert again.uuid == first.uuid and again.log_index == first.log_index
    assert paths(log)[-2:] == [
        "POST /api/v1/log/entries",
        f"GET /api/v1/log/entries/{first.entry_id}",
    ]


def test_409_without_location_uses_message(log: FakeV1Log) -> None:
    c = make(log)
    entry = c.submit(proposed_hashedrekord(2))

    def no_location(req: httpx.Request) -> httpx.Response | None:
        if req.method == "POST" and req.url.path == "/api/v1/log/entries":
            msg = f"an equivalent entry already exists with UUID {entry.entry_id}"
            return httpx.Response(409, json={"code": 409, "message": msg})
        return None

    log.override = no_location
    assert c.submit(proposed_hashedrekord(2)).uuid == entry.uuid


def test_get_by_index_and_uuid(log: FakeV1Log) -> None:
    c = make(log)
    e = c.get_entry(3)
    assert e.log_index == 3 and e.body == json.dumps({"n": 3}).encode()
    assert c.get_entry(uuid=e.uuid).log_index == 3
    assert c.get_entry(uuid=e.entry_id.upper()).log_index == 3
    with pytest.raises(NotFoundError):
        c.get_entry(99)
    with pytest.raises(ValueError):
        c.get_entry(uuid="xyz")
    with pytest.raises(ValueError):
        c.get_entry()


def test_search_is_chunked_by_ten(log: FakeV1Log) -> None:
    for i in range(30):
        log.add(b"more %d" % i)
    c = make(log)
    got = c.search(indexes=list(range(25)))
    assert sorted(e.log_index for e in got) == list(range(25))
    searches = [r for r in log.requests if r.url.path.endswith("/retrieve")]
    assert [len(json.loads(r.content)["logIndexes"]) for r in searches] == [10, 10, 5]
    by_uuid = c.search(uuids=[got[0].uuid])
    assert [e.log_index for e in by_uuid] == [got[0].log_index]


def test_search_by_proposed_entry(log: FakeV1Log) -> None:
    c = make(log)
    e = c.submit(proposed_hashedrekord(7))
    assert [x.uuid for x in c.search(entries=[proposed_hashedrekord(7)])] == [e.uuid]
    assert c.search(entries=[proposed_hashedrekord(8)]) == []


def test_get_entries_in_order_and_missing(log: FakeV1Log) -> None:
    c = make(log)
    assert [e.log_index for e in c.get_entries([4, 0, 2])] == [4, 0, 2]
    with pytest.raises(NotFoundError, match="17"):
        c.get_entries([1, 17])


def test_entry_columns_in_order_and_missing(log: FakeV1Log) -> None:
    for i in range(20):
        log.add(b"more %d" % i)
    c = make(log)
    cols = c.get_entry_columns([24, 0, 13, 2])
    assert cols.log_indexes.tolist() == [24, 0, 13, 2]

    # The fake signs fresh (randomised) SETs and checkpoints per response: compare the rest.
    def unsigned(e: LogEntry) -> LogEntry:
        assert e.inclusion_proof is not None
        proof = replace(e.inclusion_proof, checkpoint=None)
        return replace(e, signed_entry_timestamp=None, inclusion_proof=proof)

    expected = [unsigned(e) for e in c.get_entries([24, 0, 13, 2])]
    assert [unsigned(cols.entry(i)) for i in range(4)] == expected
    assert len(c.get_entry_columns([])) == 0
    with pytest.raises(NotFoundError, match="31"):
        c.get_entry_columns([1, 31])

    async def main() -> None:
        async with AsyncRekorV1Client(
            f"http://{log.host}", log=log.log, transport=log.async_transport(), retry=NO_WAIT
        ) as ac:
            got = await ac.get_entry_columns(list(range(24, -1, -1)))
            assert got.log_indexes.tolist() == list(range(24, -1, -1))

    anyio.run(main)


def test_entry_columns_are_verified_unless_opted_out(log: FakeV1Log) -> None:
    def bad(i: int, inner: dict[str, Any]) -> dict[str, Any]:
        if i == 3:
            inner["verification"]["inclusionProof"]["hashes"][0] = "00" * 32
        return inner

    log.tamper = bad
    with pytest.raises(InclusionError):
        make(log).get_entry_columns([1, 2, 3])
    unchecked = make(log, verify=VerifyOptions.none()).get_entry_columns([1, 2, 3])
    assert unchecked.log_indexes.tolist() == [1, 2, 3]  # the caller checks them itself
    log.tamper = None
    log.override = lambda req: (
        httpx.Response(200, json=[log.entry(4)]) if req.url.path.endswith("/retrieve") else None
    )
    with pytest.raises(InclusionError, match="not asked for"):
        make(log).get_entry_columns([1])


@pytest.mark.parametrize("inactive", [None, [], "missing"])
def test_log_info_inactive_shard_forms(log: FakeV1Log, inactive: Any) -> None:
    def info(req: httpx.Request) -> httpx.Response | None:
        if req.url.path != "/api/v1/log":
            return None
        obj: dict[str, Any] = {
            "rootHash": log.root(5).hex(),
            "treeSize": 5,
            "signedTreeHead": log.checkpoint(5),
            "treeID": str(log.tree_id),
        }
        if inactive != "missing":
            obj["inactiveShards"] = inactive
        return httpx.Response(200, json=obj)

    log.override = info
    li = make(log).log_info()
    assert li.inactive_shards == () and li.total_size == 5
    assert li.active.checkpoint.size == 5 and li.active.tree_id == log.tree_id


def test_log_info_with_inactive_shard() -> None:
    old = FakeV1Log(tree_id=1)
    new = FakeV1Log(tree_id=2)
    new.key, new.signer, new.log_id = old.key, old.signer, old.log_id  # same key, two trees
    for i in range(3):
        old.add(b"old %d" % i)
    new.add(b"new")

    def info(req: httpx.Request) -> httpx.Response | None:
        if req.url.path != "/api/v1/log":
            return None
        shard = {
            "rootHash": old.root(3).hex(),
            "treeSize": 3,
            "signedTreeHead": old.checkpoint(3),
            "treeID": "1",
        }
        return httpx.Response(
            200,
            json={
                "rootHash": new.root(1).hex(),
                "treeSize": 1,
                "signedTreeHead": new.checkpoint(1),
                "treeID": "2",
                "inactiveShards": [shard],
            },
        )

    new.override = info
    c = make(new)
    li = c.log_info()
    assert li.total_size == 4
    assert [s.tree_id for s in li.inactive_shards] == [1]
    assert sorted(c.tracker.origins()) == ["rekor.test - 1", "rekor.test - 2"]


def test_log_info_head_mismatch(log: FakeV1Log) -> None:
    log.override = lambda req: (
        httpx.Response(
            200,
            json={
                "rootHash": log.root(4).hex(),
                "treeSize": 4,
                "signedTreeHead": log.checkpoint(5),
                "treeID": "1",
            },
        )
        if req.url.path == "/api/v1/log"
        else None
    )
    with pytest.raises(CheckpointError):
        make(log).log_info()


def test_public_key_and_raw_consistency_proof(log: FakeV1Log) -> None:
    c = make(log)
    assert c.public_key().startswith(b"-----BEGIN PUBLIC KEY-----")
    proof = c.consistency_proof(2, 5)
    merkle.verify_consistency(2, 5, log.root(2), log.root(5), proof)


def test_consistency_is_checked_as_the_log_grows(log: FakeV1Log) -> None:
    c = make(log)
    c.get_entry(0)
    log.add(b"x")
    log.add(b"y")
    c.get_entry(1)
    assert any(r.url.path == "/api/v1/log/proof" for r in log.requests)
    latest = c.tracker.latest(f"{log.host} - {log.tree_id}")
    assert latest is not None and latest.size == 7


def test_rollback_is_divergence(log: FakeV1Log) -> None:
    c = make(log)
    c.get_entry(0)
    log.frozen_size = 3
    with pytest.raises(DivergenceError) as info:
        c.get_entry(1)
    assert info.value.evidence["old_size"] == 5 and info.value.evidence["new_size"] == 3
    assert b"\n5\n" in info.value.evidence["old"] and b"\n3\n" in info.value.evidence["new"]


def test_forked_history_is_divergence(log: FakeV1Log) -> None:
    c = make(log)
    c.get_entry(0)
    log.bodies[2] = b"rewritten history"
    log.add(b"grow")
    with pytest.raises(DivergenceError) as info:
        c.get_entry(0)
    assert info.value.evidence["new_size"] == 6


def test_same_size_different_root_is_divergence(log: FakeV1Log) -> None:
    c = make(log)
    c.get_entry(0)
    log.bodies[4] = b"swapped"
    with pytest.raises(DivergenceError, match="two different roots"):
        c.get_entry(1)


def test_shared_tracker_seeds_state(log: FakeV1Log) -> None:
    tracker = CheckpointTracker()
    make(log, tracker=tracker).get_entry(0)
    log.frozen_size = 2
    with pytest.raises(DivergenceError):
        make(log, tracker=tracker).get_entry(0)


# ---------------------------------------------------------------- protocol lies


def tamper(log: FakeV1Log, fn: Any) -> None:
    def apply(i: int, inner: dict[str, Any]) -> dict[str, Any]:
        fn(inner)
        return inner

    log.tamper = apply


def test_body_not_matching_uuid(log: FakeV1Log) -> None:
    tamper(log, lambda e: e.update(body=base64.b64encode(b"evil").decode()))
    with pytest.raises(InclusionError, match="UUID"):
        make(log).get_entry(1)


def test_proof_that_does_not_verify(log: FakeV1Log) -> None:
    def bad(e: dict[str, Any]) -> None:
        e["verification"]["inclusionProof"]["hashes"][0] = "00" * 32

    tamper(log, bad)
    with pytest.raises(InclusionError) as info:
        make(log).get_entry(1)
    assert info.value.evidence["index"] == 1


def test_checkpoint_signed_by_another_key(log: FakeV1Log) -> None:
    def foreign(e: dict[str, Any]) -> None:
        e["verification"]["inclusionProof"]["checkpoint"] = log.checkpoint(
            signer=other_ecdsa_signer(log.host)
        )

    tamper(log, foreign)
    with pytest.raises(SignatureError):
        make(log).get_entry(1)
    # opting out of that one check, by name, accepts it
    opts = VerifyOptions().without("checkpoint_signature")
    assert make(log, verify=opts).get_entry(1).log_index == 1


def test_proof_for_another_tree_head(log: FakeV1Log) -> None:
    def other_head(e: dict[str, Any]) -> None:
        e["verification"]["inclusionProof"]["checkpoint"] = log.checkpoint(4)

    tamper(log, other_head)
    with pytest.raises(CheckpointError):
        make(log).get_entry(1)


def test_bad_signed_entry_timestamp(log: FakeV1Log) -> None:
    tamper(log, lambda e: e.update(integratedTime=e["integratedTime"] + 1))
    with pytest.raises(SignatureError):
        make(log).get_entry(1)
    assert make(log, verify=VerifyOptions().without("signed_entry_timestamp")).get_entry(1)


def test_missing_inclusion_proof(log: FakeV1Log) -> None:
    tamper(log, lambda e: e.pop("verification"))
    with pytest.raises(InclusionError, match="no inclusion proof"):
        make(log).get_entry(1)


def test_wrong_entry_for_index(log: FakeV1Log) -> None:
    log.override = lambda req: (
        httpx.Response(200, json=log.entry(2)) if "logIndex" in req.url.params else None
    )
    with pytest.raises(InclusionError, match="asked for index 1"):
        make(log).get_entry(1)


def test_wrong_content_type(log: FakeV1Log) -> None:
    log.override = lambda req: httpx.Response(
        200, content=json.dumps(log.entry(1)).encode(), headers={"content-type": "text/html"}
    )
    with pytest.raises(MalformedError, match="content type"):
        make(log).get_entry(1)


def test_garbage_json(log: FakeV1Log) -> None:
    log.override = lambda req: httpx.Response(
        200, content=b"{not json", headers={"content-type": "application/json"}
    )
    with pytest.raises(MalformedError, match="not valid JSON"):
        make(log).get_entry(1)


def test_verification_needs_a_key(log: FakeV1Log) -> None:
    with pytest.raises(ValueError, match="public key"):
        RekorV1Client("http://rekor.test", transport=log.transport())
    opts = VerifyOptions().without("checkpoint_signature", "signed_entry_timestamp")
    c = RekorV1Client("http://rekor.test", transport=log.transport(), verify=opts)
    assert c.get_entry(0).log_index == 0
    with pytest.raises(ValueError, match="unknown checks"):
        VerifyOptions().without("nope")
    assert not any(
        getattr(VerifyOptions.none(), f) for f in ("inclusion", "consistency", "entry_uuid")
    )


def test_public_key_argument(log: FakeV1Log) -> None:
    pem = make(log).public_key()
    c = RekorV1Client(f"http://{log.host}", public_key=pem, transport=log.transport())
    assert c.get_entry(2).log_index == 2


# ---------------------------------------------------------------- async twin


def test_async_twin(log: FakeV1Log) -> None:
    async def main() -> None:
        async with AsyncRekorV1Client(
            f"http://{log.host}",
            log=log.log,
            transport=log.async_transport(),
            retry=NO_WAIT,
            max_concurrency=4,
        ) as c:
            subs = await c.submit_many([proposed_hashedrekord(100 + i) for i in range(12)])
            assert sorted(e.log_index for e in subs) == list(range(5, 17))
            again = await c.submit(proposed_hashedrekord(100))
            assert again.uuid == subs[0].uuid
            got = await c.get_entries(list(range(16, -1, -1)))
            assert [e.log_index for e in got] == list(range(16, -1, -1))
            assert (await c.get_entry(uuid=got[0].uuid)).log_index == 16
            assert (await c.log_info()).active.tree_size == 17
            assert len(await c.search(uuids=[e.uuid for e in got[:11]])) == 11
            log.frozen_size = 3
            with pytest.raises(DivergenceError):
                await c.get_entry(0)

    anyio.run(main)


def test_conflict_location_on_another_host_is_not_followed(log: FakeV1Log) -> None:
    c = make(log)
    entry = c.submit(proposed_hashedrekord(3))

    def elsewhere(req: httpx.Request) -> httpx.Response | None:
        if req.method == "POST":
            loc = f"https://evil.example/api/v1/log/entries/{entry.entry_id}"
            return httpx.Response(
                409, json={"code": 409, "message": "dup"}, headers={"location": loc}
            )
        return None

    log.override = elsewhere
    assert c.submit(proposed_hashedrekord(3)).uuid == entry.uuid
    assert all(r.url.host == log.host for r in log.requests)
