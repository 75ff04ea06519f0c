"""SubmissionQueue and its SQLite storage: validation, idempotence, batches, leases, bad files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from queue_requests import KEY, dsse, envelope, hashedrekord_v2
from rekorkit import merkle
from rekorkit.entries import canonicalize_v1, dsse_v001_request
from rekorkit.errors import MalformedError, NotFoundError, SignatureError, StoreError
from rekorkit.queue import (
    Attempt,
    Dead,
    DeadReason,
    Done,
    QueueBackend,
    QueueStorage,
    Retry,
    SQLiteQueueStorage,
    State,
    SubmissionQueue,
    submission_id,
)

V1 = QueueBackend("http://127.0.0.1:1", 1)
V2 = QueueBackend("http://127.0.0.1:1", 2)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def queue(tmp_path: Path) -> SubmissionQueue:
    with SubmissionQueue(tmp_path / "q.sqlite", clock=Clock()) as q:
        yield q


def test_storage_is_the_protocol(queue: SubmissionQueue) -> None:
    assert isinstance(queue.storage, QueueStorage)


def test_enqueue_computes_leaf_hash_and_id_before_sending(queue: SubmissionQueue) -> None:
    request = dsse(1)
    sid = queue.enqueue(request, backend=V1)
    sub = queue.get(sid)
    leaf = merkle.leaf_hash(canonicalize_v1(request))
    assert sub.leaf_hash == leaf and sub.uuid == leaf.hex()
    assert sid == submission_id(V1.key, leaf)
    assert (sub.state, sub.kind, sub.attempts) == (State.PENDING, "dsse", 0)
    assert json.loads(sub.request) == request


def test_same_entry_twice_is_one_submission(queue: SubmissionQueue) -> None:
    request = dsse(1)  # ECDSA signatures are randomized: the same entry is the same request
    first = queue.enqueue(request, backend=V1)
    again = queue.enqueue(json.dumps(request), backend=V1)  # as JSON text this time
    assert first == again
    assert queue.status().by_state["pending"] == 1
    # The same entry for another log is another submission.
    other = queue.enqueue(request, backend=QueueBackend("http://127.0.0.1:2", 1))
    assert other != first and queue.status().total == 2


def test_batch_enqueue_is_one_transaction_in_input_order(queue: SubmissionQueue) -> None:
    requests = [dsse(i) for i in range(50)]
    ids = queue.enqueue_many([*requests, requests[3]], backend=V1)
    assert len(ids) == 51 and len(set(ids)) == 50 and ids[3] == ids[50]
    assert queue.status().by_state["pending"] == 50
    assert {s.id for s in queue.list(limit=100)} == set(ids)
    assert len(queue.list(limit=10, offset=45)) == 5


def test_v2_requests_are_validated_as_v2(queue: SubmissionQueue) -> None:
    sid = queue.enqueue(hashedrekord_v2(1), backend=V2)
    assert queue.get(sid).kind == "hashedrekord"
    with pytest.raises(MalformedError) as info:
        queue.enqueue(dsse(1), backend=V2)  # a v1 request sent to a v2 log
    assert info.value.where == "apiVersion" and "unknown field" in str(info.value)
    assert queue.status().total == 1


@pytest.mark.parametrize(
    ("request_", "where"),
    [
        (b'{"apiVersion": "0.0.1", "kind": ', "byte 32"),
        (b"[1, 2]", "body"),
        ({"apiVersion": "0.0.1", "kind": "dsse", "spec": {"bogus": 1}}, "spec.bogus"),
        ({"apiVersion": "9", "kind": "dsse", "spec": {}}, "kind"),
    ],
)
def test_malformed_requests_are_refused_precisely(
    queue: SubmissionQueue, request_: object, where: str
) -> None:
    with pytest.raises(MalformedError) as info:
        queue.enqueue(request_, backend=V1)  # type: ignore[arg-type]
    assert info.value.where == where
    assert queue.status().total == 0


def test_wrongly_signed_request_is_refused_and_nothing_queued(queue: SubmissionQueue) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = dsse_v001_request(envelope(7, key=stranger), [KEY.public_key()])
    with pytest.raises(SignatureError) as info:
        queue.enqueue_many([dsse(1), dsse(2), forged], backend=V1)
    assert "request 2" in str(info.value)
    assert info.value.evidence["index"] == 2
    assert "signatures[0]" in info.value.evidence["field"]
    assert queue.status().total == 0  # the good ones in the batch were not queued either


def test_oversized_request_is_refused(tmp_path: Path) -> None:
    with SubmissionQueue(tmp_path / "q.sqlite", max_request=500) as q:
        with pytest.raises(MalformedError, match="over the 500-byte limit"):
            q.enqueue(dsse(1), backend=V1)
        assert q.status().total == 0


def test_unknown_id(queue: SubmissionQueue) -> None:
    with pytest.raises(NotFoundError):
        queue.get("0" * 32)


def test_claims_lease_due_items_and_expired_leases_come_back(queue: SubmissionQueue) -> None:
    clock = queue.clock
    assert isinstance(clock, Clock)
    ids = queue.enqueue_many([dsse(i) for i in range(3)], backend=V1)
    store = queue.storage
    first = store.claim(limit=2, lease=30, now=clock.t, log_size_hint=5)
    assert len(first) == 2 and all(c.claims == 1 and c.log_size_hint == 5 for c in first)
    assert store.get(first[0].submission.id).state == State.LEASED  # type: ignore[union-attr]
    rest = store.claim(limit=10, lease=30, now=clock.t)
    assert [c.submission.id for c in rest] == [
        i for i in ids if i not in {c.submission.id for c in first}
    ]
    assert store.claim(limit=10, lease=30, now=clock.t + 29) == []  # all leased
    # The first worker died: its leases expire and the items are due again.
    again = store.claim(limit=10, lease=30, now=clock.t + 31)
    assert len(again) == 3 and all(c.claims == 2 for c in again)
    assert {
        c.log_size_hint for c in again if c.submission.id in {x.submission.id for x in first}
    } == {5}


def test_a_stale_worker_cannot_overwrite_a_newer_claim(queue: SubmissionQueue) -> None:
    [sid] = queue.enqueue_many([dsse(1)], backend=V1)
    store, t = queue.storage, 1_000_000.0
    [stale] = store.claim(limit=1, lease=10, now=t)
    [fresh] = store.claim(limit=1, lease=10, now=t + 11)
    attempt = Attempt(at=t + 12, error="UnavailableError", message="503", status=503)
    assert store.record([(stale, Retry(attempt, t + 100))], now=t + 12) == [False]
    assert store.record([(fresh, Done({"x": 1}, 7))], now=t + 12) == [True]
    sub = store.get(sid)
    assert sub is not None and (sub.state, sub.log_index, sub.receipt) == (State.DONE, 7, {"x": 1})
    assert store.record([(stale, Done({"y": 2}, 9))], now=t + 13) == [False]
    assert store.get(sid).receipt == {"x": 1}  # type: ignore[union-attr]


def test_outcomes_keep_the_whole_error_history(queue: SubmissionQueue) -> None:
    [sid] = queue.enqueue_many([dsse(1)], backend=V1)
    store, t = queue.storage, 1_000_000.0
    [c] = store.claim(limit=1, lease=10, now=t)
    a1 = Attempt(at=t + 1, error="RateLimitedError", message="429", status=429, retry_after=5.0)
    store.record([(c, Retry(a1, t + 6))], now=t + 1)
    assert store.claim(limit=1, lease=10, now=t + 5) == []  # not due before Retry-After
    [c] = store.claim(limit=1, lease=10, now=t + 6)
    a2 = Attempt(at=t + 7, error="RekorAPIError", message="400 bad", status=400)
    store.record([(c, Dead(DeadReason.REJECTED, a2))], now=t + 7)
    sub = queue.get(sid)
    assert (sub.state, sub.dead_reason, sub.attempts) == (State.DEAD, DeadReason.REJECTED, 2)
    assert sub.errors == (a1, a2)
    status = queue.status()
    assert status.by_state["dead"] == 1 and status.last_error == (sid, a2)
    assert queue.retry(dead=True) == 1
    sub = queue.get(sid)
    assert (sub.state, sub.attempts, sub.dead_reason) == (State.PENDING, 0, None)
    assert sub.errors == (a1, a2)  # history kept


def test_release_gives_items_back_without_an_attempt(queue: SubmissionQueue) -> None:
    queue.enqueue_many([dsse(1)], backend=V1)
    store = queue.storage
    [c] = store.claim(limit=1, lease=100, now=1_000_000.0)
    store.release([c])
    [again] = store.claim(limit=1, lease=100, now=1_000_000.0)
    assert again.claims == 1 and again.submission.attempts == 0


def test_backends_are_stored_with_their_keys(queue: SubmissionQueue) -> None:
    b = QueueBackend("http://127.0.0.1:9/", 2, public_key="PEM", vkey="name+1234+AAAA")
    queue.enqueue(hashedrekord_v2(1), backend=b)
    assert queue.storage.backends() == [
        QueueBackend("http://127.0.0.1:9", 2, "PEM", "name+1234+AAAA")
    ]


def test_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with SubmissionQueue(path) as q:
        sid = q.enqueue(dsse(1), backend=V1)
    with SubmissionQueue(path) as q:
        assert q.get(sid).state == State.PENDING
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError, match=r"corrupt or not a queue"):
        SubmissionQueue(path)


def test_truncated_queue_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with SubmissionQueue(path) as q:
        q.enqueue_many([dsse(i) for i in range(20)], backend=V1)
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 200 + data[300:])  # the header page damaged
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreError, match="corrupt or not a queue"), SubmissionQueue(path) as q:
        q.status()


def test_other_database_and_newer_schema_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a rekorkit queue"):
        SubmissionQueue(other)
    newer = tmp_path / "newer.sqlite"
    SubmissionQueue(newer).close()
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SubmissionQueue(newer)


def test_locked_queue_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    SubmissionQueue(path).close()
    # Another process holds the write lock and does not let go.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        storage = SQLiteQueueStorage(path, busy_timeout=0.3)
        q = SubmissionQueue(storage)
        with pytest.raises(StoreError, match="locked by another process"):
            q.enqueue(dsse(1), backend=V1)
        assert q.status().total == 0  # reads still work under WAL
        q.close()
    finally:
        holder.kill()
        holder.wait()
