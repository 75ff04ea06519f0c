"""SubmissionWorker against the local log: retries, 409s, ambiguous writes, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from queue_requests import KEY, dsse, hashedrekord_v2, v1_backend, v2_backend
from rekorkit import RekorV1Client, parse_verifier_key
from rekorkit.client import AsyncRekorV2Client, RetryPolicy, Timeouts
from rekorkit.entries import verify_entry
from rekorkit.queue import (
    BackendLimits,
    DeadReason,
    QueueBackend,
    State,
    SubmissionQueue,
    SubmissionWorker,
    client_for,
)
from rekorkit.testing import LocalRekor, start_server

FAST = RetryPolicy(max_attempts=5, base_delay=0.02, max_delay=0.1)


@pytest.fixture
def srv() -> Iterator[LocalRekor]:
    with start_server() as server:
        yield server


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SubmissionQueue]:
    with SubmissionQueue(tmp_path / "q.sqlite") as q:
        yield q


def drain(queue: SubmissionQueue, **kwargs: object) -> object:
    worker = SubmissionWorker(queue, lease=10, poll_interval=0.05, **kwargs)  # type: ignore[arg-type]
    return asyncio.run(worker.run(once=True, handle_signals=False))


def post_hits(srv: LocalRekor) -> int:
    return sum(r["hits"] for r in srv._admin("GET", "/_rekorkit/faults")["rules"])


def count_posts(srv: LocalRekor, path: str) -> None:
    srv.set_faults({"action": "latency", "latency": 0, "method": "POST", "path_prefix": path})


def test_drain_stores_verified_receipts(srv: LocalRekor, queue: SubmissionQueue) -> None:
    ids = queue.enqueue_many([dsse(i) for i in range(20)], backend=v1_backend(srv))
    ids2 = queue.enqueue_many([hashedrekord_v2(i) for i in range(20)], backend=v2_backend(srv))
    report = drain(queue)
    assert (report.done, report.dead, report.open) == (40, 0, 0)  # type: ignore[attr-defined]
    assert httpx.get(srv.url + "/healthz").json()["size"] == 40
    indexes = set()
    for sid in ids:
        sub = queue.get(sid)
        assert sub.state == State.DONE and sub.receipt is not None
        result = verify_entry(sub.receipt, log_key=srv.public_key_pem, strict=True)
        assert result.entry.log_index == sub.log_index  # type: ignore[union-attr]
        indexes.add(sub.log_index)
    for sid in ids2:
        sub = queue.get(sid)
        assert sub.state == State.DONE and sub.receipt is not None
        assert sub.receipt["canonicalizedBody"]  # the v2 TransparencyLogEntry as returned
        indexes.add(sub.log_index)
    assert indexes == set(range(40))


def test_503_then_429_retry_after_is_honoured(srv: LocalRekor, queue: SubmissionQueue) -> None:
    sid = queue.enqueue(dsse(1), backend=v1_backend(srv))
    srv.set_faults(
        {"action": "status", "status": 503, "count": 2, "method": "POST"},
        {"action": "status", "status": 429, "retry_after": 1, "count": 1, "method": "POST"},
    )
    report = drain(queue, retry=FAST)
    assert report.done == 1 and report.retried == 3  # type: ignore[attr-defined]
    sub = queue.get(sid)
    assert [a.status for a in sub.errors] == [503, 503, 429]
    assert [a.error for a in sub.errors] == ["UnavailableError"] * 2 + ["RateLimitedError"]
    assert sub.errors[-1].retry_after == 1.0
    # The backoff caps at 0.1 s; only Retry-After can explain a second's wait.
    assert sub.updated_at - sub.errors[-1].at >= 1.0
    verify_entry(sub.receipt, log_key=srv.public_key_pem, strict=True)  # type: ignore[arg-type]


def test_an_entry_already_logged_is_resolved_not_duplicated(
    srv: LocalRekor, queue: SubmissionQueue
) -> None:
    request = dsse(5)
    with RekorV1Client(
        srv.url, public_key=srv.public_key_pem, verifier=parse_verifier_key(srv.v1_vkey)
    ) as v1:
        logged = v1.submit(request)
    sid = queue.enqueue(request, backend=v1_backend(srv))
    v2_request = hashedrekord_v2(5)

    async def v2_first() -> int:
        async with AsyncRekorV2Client(
            srv.url,
            public_key=srv.checkpoint_public_key_pem,
            verifier=parse_verifier_key(srv.checkpoint_vkey),
        ) as v2:
            return (await v2.submit(v2_request)).log_index

    v2_index = asyncio.run(v2_first())
    sid2 = queue.enqueue(v2_request, backend=v2_backend(srv))
    report = drain(queue)
    assert (report.done, report.dead) == (2, 0)  # type: ignore[attr-defined]
    assert queue.get(sid).log_index == logged.log_index  # the 409 named it
    assert queue.get(sid2).log_index == v2_index  # x-log-index, read back from the tiles
    assert httpx.get(srv.url + "/healthz").json()["size"] == 2


def test_v2_write_that_timed_out_is_found_by_leaf_hash(tmp_path: Path) -> None:
    with start_server(integration_delay=1.0) as srv, SubmissionQueue(tmp_path / "q") as queue:
        backend = v2_backend(srv)
        sid = queue.enqueue(hashedrekord_v2(9), backend=backend)
        client = AsyncRekorV2Client(
            srv.url,
            public_key=srv.checkpoint_public_key_pem,
            verifier=parse_verifier_key(srv.checkpoint_vkey),
            retry=RetryPolicy.none(),
            timeout=Timeouts(connect=2.0, read=0.5),
        )
        count_posts(srv, "/api/v2/log/entries")
        report = drain(
            queue,
            clients={backend.key: client},
            retry=RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=2.0, rng=lambda: 1.0),
        )
        sub = queue.get(sid)
        assert sub.state == State.DONE and report.resolved == 1  # type: ignore[attr-defined]
        assert [a.error for a in sub.errors] == ["RequestTimeoutError"]
        assert post_hits(srv) == 1  # sent once: found in the tiles, not sent again
        assert httpx.get(srv.url + "/healthz").json()["size"] == 1
        assert sub.log_index == 0


@pytest.mark.parametrize("status", [400, 422])
def test_a_request_the_log_refuses_goes_to_the_dead_letter(
    queue: SubmissionQueue, status: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": status, "message": "invalid entry"})

    backend = QueueBackend("http://127.0.0.1:9", 1, public_key=_pem())
    sid = queue.enqueue(dsse(1), backend=backend)
    client = client_for(backend, transport=httpx.MockTransport(handler))
    report = drain(queue, clients={backend.key: client})
    assert report.dead == 1  # type: ignore[attr-defined]
    sub = queue.get(sid)
    assert (sub.state, sub.dead_reason, sub.attempts) == (State.DEAD, DeadReason.REJECTED, 1)
    assert sub.errors[0].status == status and "invalid entry" in sub.errors[0].message


def test_read_only_log_rejects_and_exhausted_attempts_die(tmp_path: Path) -> None:
    with start_server(read_only=True) as srv, SubmissionQueue(tmp_path / "q") as queue:
        sid = queue.enqueue(dsse(1), backend=v1_backend(srv))
        drain(queue)
        sub = queue.get(sid)
        assert (sub.dead_reason, sub.errors[0].status) == (DeadReason.REJECTED, 405)
    with start_server() as srv, SubmissionQueue(tmp_path / "q2") as queue:
        sid = queue.enqueue(dsse(1), backend=v1_backend(srv))
        srv.set_faults({"action": "status", "status": 503, "method": "POST"})
        report = drain(queue, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
        sub = queue.get(sid)
        assert report.dead == 1  # type: ignore[attr-defined]
        assert (sub.dead_reason, sub.attempts) == (DeadReason.EXHAUSTED, 3)
        assert [a.status for a in sub.errors] == [503, 503, 503]
        # Requeued once the log is back, it is logged.
        srv.clear_faults()
        assert queue.retry([sid]) == 1
        drain(queue)
        assert queue.get(sid).state == State.DONE


def test_per_backend_rate_limit(srv: LocalRekor, queue: SubmissionQueue) -> None:
    backend = v1_backend(srv)
    queue.enqueue_many([dsse(i) for i in range(12)], backend=backend)
    import time

    t0 = time.monotonic()
    report = drain(queue, limits={backend.key: BackendLimits(max_in_flight=2, max_rate=10.0)})
    elapsed = time.monotonic() - t0
    assert report.done == 12  # type: ignore[attr-defined]
    # A burst of 10, then 10/s: the last two wait for tokens.
    assert elapsed >= 0.15


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_status_json_shape(srv: LocalRekor, queue: SubmissionQueue) -> None:
    queue.enqueue_many([dsse(i) for i in range(3)], backend=v1_backend(srv))
    status = queue.status()
    assert status.by_state == {"pending": 3, "leased": 0, "done": 0, "dead": 0}
    assert status.due == 3 and status.open == 3 and status.last_error is None


def _slow_posts(srv: LocalRekor, seconds: float) -> None:
    srv.set_faults(
        {"action": "latency", "latency": seconds, "method": "POST", "path_prefix": "/api/v1/"}
    )


def test_claims_ahead_are_given_back_on_stop(srv: LocalRekor, queue: SubmissionQueue) -> None:
    queue.enqueue_many([dsse(i) for i in range(12)], backend=v1_backend(srv))
    _slow_posts(srv, 0.3)
    worker = SubmissionWorker(queue, concurrency=2, lease=10, poll_interval=0.05)
    worker.on_progress = lambda report: worker.stop()
    report = asyncio.run(worker.run(once=True, handle_signals=False))
    # Two in flight, four more claimed ahead: those four were never sent.
    assert report.done >= 2 and report.dead == 0
    assert queue.status().by_state["leased"] == 0
    pending = queue.list(state=State.PENDING)
    assert len(pending) == 12 - report.done
    assert all(s.attempts == 0 for s in pending)
    assert httpx.get(srv.url + "/healthz").json()["size"] == report.done


def test_a_claim_that_waited_half_its_lease_is_given_back_not_sent(
    srv: LocalRekor, queue: SubmissionQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue.enqueue_many([dsse(i) for i in range(3)], backend=v1_backend(srv))
    _slow_posts(srv, 0.8)
    released: list[str] = []
    give_back = queue.storage.release

    def spy(claims: list[Any]) -> None:
        released.extend(c.submission.id for c in claims)
        give_back(claims)

    monkeypatch.setattr(queue.storage, "release", spy)
    # One in flight, lease 3 s: the third item claimed at the start waits two
    # slow POSTs (at least 1.6 s), more than half its lease, so it goes back
    # and is claimed afresh.
    worker = SubmissionWorker(queue, concurrency=1, lease=3, poll_interval=0.05, retry=FAST)
    report = asyncio.run(worker.run(once=True, handle_signals=False))
    assert released and report.done == 3 and report.dead == 0
    assert httpx.get(srv.url + "/healthz").json()["size"] == 3  # nothing logged twice
