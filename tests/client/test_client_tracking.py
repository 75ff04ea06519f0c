"""CheckpointTracker.observe_many (many checkpoints, proofs to one size) and the
async client's rounds that feed it.

A forked checkpoint among a batch of honest ones must still be refused with
DivergenceError evidence, whichever position it takes in the batch.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from client_fakes import FakeV2Log, b64, v2_request
from rekorkit import merkle
from rekorkit.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, sign_checkpoint
from rekorkit.client import RetryPolicy
from rekorkit.client._flow import Flow, drive
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.v2 import AsyncRekorV2Client, _ObserveRounds
from rekorkit.entries.canonical import canonicalize_v2
from rekorkit.errors import DivergenceError, TransportError
from rekorkit.note import Ed25519Signer

ORIGIN = "tracking.test"
SIGNER = Ed25519Signer.generate(ORIGIN)
LEAVES = merkle.hash_leaves([b"entry %d" % i for i in range(600)])
FORK = merkle.hash_leaves([b"entry %d" % i if i != 3 else b"forged" for i in range(600)])


def signed(size: int, leaves: Any = LEAVES) -> SignedCheckpoint:
    root = merkle.root(leaves[:size]) if size else merkle.EMPTY_ROOT
    raw = sign_checkpoint(Checkpoint(ORIGIN, size, root), SIGNER)
    return open_checkpoint(raw, SIGNER.verifier())


class Proofs:
    """Consistency proofs from the honest tree, recording each request."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[int]]] = []

    def __call__(self, size: int, olds: list[int]) -> Flow[list[list[bytes]]]:
        self.calls.append((size, list(olds)))
        yield "proofs"  # one round trip, as a driver would make
        return [merkle.consistency_proof(LEAVES, old, size) for old in olds]


def observe(
    tracker: CheckpointTracker, items: list[tuple[SignedCheckpoint, int]], proofs: Proofs
) -> list[DivergenceError | None]:
    return drive(tracker.observe_many(items, proofs), lambda op: None)


def test_batch_is_proven_to_the_largest_with_one_set_of_proofs() -> None:
    tracker = CheckpointTracker({ORIGIN: signed(100)})
    proofs = Proofs()
    batch = [(signed(n), 100) for n in (130, 101, 300, 130, 257)]
    assert observe(tracker, batch, proofs) == [None] * 5
    assert proofs.calls == [(300, [100, 101, 130, 257])]
    head = tracker.latest(ORIGIN)
    assert head is not None and head.size == 300
    assert all(tracker.accepted(cp) for cp, _ in batch)
    # Tree heads already accepted need no proof at all.
    again = Proofs()
    assert observe(tracker, [(signed(130), 100), (signed(300), 300)], again) == [None, None]
    assert again.calls == []


def test_older_than_head_is_proven_to_the_head() -> None:
    tracker = CheckpointTracker({ORIGIN: signed(400)})
    proofs = Proofs()
    assert observe(tracker, [(signed(200), 0), (signed(400), 0)], proofs) == [None, None]
    assert proofs.calls == [(400, [200])]
    head = tracker.latest(ORIGIN)
    assert head is not None and head.size == 400


@pytest.mark.parametrize("forked_size", [300, 150])
def test_forked_checkpoint_in_a_batch_is_refused(forked_size: int) -> None:
    # 300: the fork is the largest (the target), refused against the trusted head,
    # and the next largest honest one is the target instead. 150: the fork is
    # smaller than the target and fails its proof to it.
    tracker = CheckpointTracker({ORIGIN: signed(100)})
    forked = signed(forked_size, FORK)
    honest = [signed(n) for n in (120, 200, 250)]
    out = observe(
        tracker, [(honest[0], 100), (forked, 100), *[(c, 100) for c in honest[1:]]], Proofs()
    )
    assert out[0] is None and out[2] is None and out[3] is None
    err = out[1]
    assert isinstance(err, DivergenceError)
    sizes = {err.evidence["old_size"], err.evidence["new_size"]}
    assert forked_size in sizes and err.evidence["origin"] == ORIGIN
    assert forked.raw in (err.evidence["old"], err.evidence["new"])
    head = tracker.latest(ORIGIN)
    assert head is not None and head.size == 250 and not tracker.accepted(forked)


def test_rollback_and_split_view_in_a_batch() -> None:
    tracker = CheckpointTracker({ORIGIN: signed(300)})
    same_size_fork = signed(300, FORK)
    out = observe(
        tracker,
        [(signed(200), 300), (same_size_fork, 0), (signed(250), 100)],
        Proofs(),
    )
    assert isinstance(out[0], DivergenceError) and "rolled back" in str(out[0])
    assert isinstance(out[1], DivergenceError) and "two different roots" in str(out[1])
    assert out[2] is None  # older than the head but not below its floor: proven instead


def test_first_checkpoints_trust_the_largest_and_check_the_rest() -> None:
    tracker = CheckpointTracker()
    proofs = Proofs()
    out = observe(tracker, [(signed(10), 0), (signed(0), 0), (signed(50, FORK), 0)], proofs)
    assert out[1] is None  # size 0: only the empty root is checked
    assert isinstance(out[0], DivergenceError)  # the fork changed leaf 3 < 10
    head = tracker.latest(ORIGIN)
    assert head is not None and head.size == 50


# -- the async client's rounds ---------------------------------------------------


def test_rounds_coalesce_and_deliver_each_outcome() -> None:
    batches: list[list[int]] = []
    first_round = anyio.Event()
    release = anyio.Event()
    tracker = CheckpointTracker()

    async def run(items: list[tuple[SignedCheckpoint, int]]) -> list[Any]:
        batches.append([cp.size for cp, _ in items])
        if len(batches) == 1:
            first_round.set()
            await release.wait()
        return [
            DivergenceError("refused", origin=ORIGIN) if cp.size == 13 else None for cp, _ in items
        ]

    rounds = _ObserveRounds(run, tracker.accepted)
    results: dict[int, str] = {}

    async def one(size: int) -> None:
        try:
            await rounds.observe(signed(size), 0)
            results[size] = "ok"
        except DivergenceError:
            results[size] = "refused"

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 10)
            await first_round.wait()
            for size in (11, 12, 13, 14):
                tg.start_soon(one, size)
            await anyio.sleep(0.01)
            release.set()

    anyio.run(main)
    assert batches == [[10], [11, 12, 13, 14]]
    assert results == {10: "ok", 11: "ok", 12: "ok", 13: "refused", 14: "ok"}


def test_rounds_survive_a_failed_round_and_a_cancelled_leader() -> None:
    calls: list[list[int]] = []
    started = anyio.Event()

    async def run(items: list[tuple[SignedCheckpoint, int]]) -> list[Any]:
        calls.append([cp.size for cp, _ in items])
        if len(calls) == 1:
            started.set()
            await anyio.sleep(10)  # the leader is cancelled here
        if len(calls) == 2:
            raise TransportError("tiles unavailable")
        return [None] * len(items)

    rounds = _ObserveRounds(run, CheckpointTracker().accepted)
    outcome: dict[int, str] = {}

    async def one(size: int) -> None:
        try:
            await rounds.observe(signed(size), 0)
            outcome[size] = "ok"
        except TransportError:
            outcome[size] = "error"

    async def main() -> None:
        async with anyio.create_task_group() as outer, anyio.create_task_group() as leader:
            leader.start_soon(one, 20)
            await started.wait()
            outer.start_soon(one, 21)
            await anyio.sleep(0.01)
            leader.cancel_scope.cancel()
        # 21 led the next round (it failed: 21 hears the error), a new caller the one after.
        await one(22)

    anyio.run(main)
    assert calls == [[20], [21], [22]]
    assert outcome == {21: "error", 22: "ok"}


def test_async_client_refuses_a_forked_response_among_honest_ones() -> None:
    log = FakeV2Log()
    for i in range(40):
        log.bodies.append(canonicalize_v2(v2_request(1000 + i)))
    forged = canonicalize_v2(v2_request(777))

    def fork_one(obj: dict[str, Any]) -> None:
        # The response for index 45 comes from a fork: leaf 2 replaced, signed by
        # the log key, with an inclusion proof that verifies in the forked tree.
        index = int(obj["logIndex"])
        if index != 45:
            return
        size = int(obj["inclusionProof"]["treeSize"])
        bodies = list(log.bodies[:size])
        bodies[2] = forged
        leaves = merkle.hash_leaves(bodies)
        root = merkle.root(leaves)
        proof = merkle.inclusion_proof(leaves, index, size)
        obj["inclusionProof"].update(
            rootHash=b64(root),
            hashes=[b64(h) for h in proof],
            checkpoint={
                "envelope": sign_checkpoint(Checkpoint(log.origin, size, root), log.signer).decode()
            },
        )

    log.tamper = fork_one
    outcomes: dict[int, str] = {}

    async def one(c: AsyncRekorV2Client, n: int) -> None:
        try:
            e = await c.submit(v2_request(n))
            outcomes[n] = f"ok {e.log_index}"
        except DivergenceError as exc:
            outcomes[n] = f"refused {exc.evidence['old_size']}/{exc.evidence['new_size']}"

    async def main() -> None:
        async with (
            AsyncRekorV2Client(
                f"http://{log.origin}",
                log=log.log,
                transport=log.async_transport(),
                retry=RetryPolicy(max_attempts=1),
                max_concurrency=8,
            ) as c,
            anyio.create_task_group() as tg,
        ):
            for n in range(12):
                tg.start_soon(one, c, n)

    anyio.run(main)
    refused = [v for v in outcomes.values() if v.startswith("refused")]
    assert len(outcomes) == 12 and len(refused) == 1
    assert sum(v.startswith("ok") for v in outcomes.values()) == 11
