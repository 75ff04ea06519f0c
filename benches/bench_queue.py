"""The submission queue: durable enqueue in batches, and draining into ``rekorkit serve``.

Enqueue: the same prepared entries stored by the queue in batches of 1,000
(one transaction each, WAL, ``synchronous=FULL``) beside the plain way, one
INSERT and one commit per entry on an equally durable SQLite file; two more
cases include the validation (signatures checked, canonical body, leaf hash),
in the calling process and in the validation pool (one process per core).

Drain, against ``rekorkit serve`` in its own process: the worker's rate
(claim, submit through the verified async client, record the receipt) beside
the async client's raw ``submit_many`` on the same log in the same run (every
response verified in both), and the pure-Python baseline: a loop of plain
httpx POSTs with retries, nothing verified. On a shared machine two cases
timed one after the other can differ by half from load alone, so one more
case alternates the two: before each timed worker round, the raw client
drains a batch of its own, and the ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import QUICK, measure, scaled
from rekorkit import parse_verifier_key
from rekorkit.client import AsyncRekorV1Client
from rekorkit.queue import QueueBackend, State, SubmissionQueue, SubmissionWorker
from rekorkit.testing import LocalRekor, start_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "queue"))
from queue_requests import dsse

N_ENQUEUE = scaled(5_000, 500)
N_DRAIN = scaled(500, 40)
ROUNDS = 3
PAIRED_ROUNDS = 7
BACKEND = QueueBackend("http://127.0.0.1:1", 1)
_counter = itertools.count()


@pytest.fixture(scope="module")
def requests() -> list[dict[str, Any]]:
    return [dsse(i) for i in range(N_ENQUEUE)]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalRekor]:
    with start_server(fsync=False, subprocess=True) as srv:
        yield srv


def _fresh(tmp: Path) -> Path:
    return tmp / f"q{next(_counter)}.sqlite"


def test_enqueue_baseline_commit_per_item(benchmark: Any, requests: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, SubmissionQueue(Path(tmp) / "prep") as q:
        items = q.prepare(requests, backend=BACKEND)

        def run() -> int:
            db = sqlite3.connect(_fresh(Path(tmp)), isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE s (id TEXT PRIMARY KEY, leaf BLOB, request BLOB)")
            for i in items:
                db.execute("BEGIN")
                db.execute("INSERT INTO s VALUES (?, ?, ?)", (i.id, i.leaf_hash, i.request))
                db.execute("COMMIT")
            n: int = db.execute("SELECT count(*) FROM s").fetchone()[0]
            db.close()
            return n

        assert measure(benchmark, run, ops=len(items), rounds=ROUNDS) == len(items)


def _store_batches(tmp: Path, items: list[Any]) -> int:
    with SubmissionQueue(_fresh(tmp)) as q:
        for k in range(0, len(items), 1000):
            q.storage.enqueue_many(items[k : k + 1000], now=time.time())
        return q.status().by_state[State.PENDING]


def test_enqueue_batches(benchmark: Any, requests: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, SubmissionQueue(Path(tmp) / "prep") as q:
        items = q.prepare(requests, backend=BACKEND)
        result = measure(
            benchmark,
            lambda: _store_batches(Path(tmp), items),
            ops=len(items),
            baseline="test_enqueue_baseline_commit_per_item",
            rounds=ROUNDS,
            note="durable batches of 1,000 vs one commit per entry",
        )
        assert result == len(items)


def _enqueue_validated(requests: list[dict[str, Any]], workers: int | None) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SubmissionQueue(_fresh(Path(tmp)), validation_workers=workers) as q,
    ):
        for k in range(0, len(requests), 1000):
            q.enqueue_many(requests[k : k + 1000], backend=BACKEND)
        return q.status().by_state[State.PENDING]


def test_enqueue_validated_batches_one_process(
    benchmark: Any, requests: list[dict[str, Any]]
) -> None:
    result = measure(
        benchmark,
        lambda: _enqueue_validated(requests, 1),
        ops=len(requests),
        baseline="test_enqueue_baseline_commit_per_item",
        rounds=ROUNDS,
        note="every DSSE signature checked and the body canonicalized, in the calling process",
        cpu=True,
    )
    assert result == len(requests)


def test_enqueue_validated_batches(benchmark: Any, requests: list[dict[str, Any]]) -> None:
    result = measure(
        benchmark,
        lambda: _enqueue_validated(requests, None),
        ops=len(requests),
        baseline="test_enqueue_baseline_commit_per_item",
        rounds=ROUNDS,
        note="every DSSE signature checked and the body canonicalized, one process per core",
    )
    assert result == len(requests)


def _batches(rounds: int) -> Iterator[list[dict[str, Any]]]:
    base = 10_000_000 + next(_counter) * 100_000
    for r in range(rounds + 1):
        yield [dsse(base + r * N_DRAIN + i) for i in range(N_DRAIN)]


def test_drain_baseline_httpx_with_retries(benchmark: Any, server: LocalRekor) -> None:
    batches = _batches(ROUNDS)

    def run() -> int:
        ok = 0
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for request in next(batches):
                for attempt in range(5):
                    r = client.post("/api/v1/log/entries", json=request)
                    if r.status_code in (201, 409):
                        ok += 1
                        break
                    time.sleep(0.05 * 2**attempt)
        return ok

    assert measure(benchmark, run, ops=N_DRAIN, rounds=ROUNDS) == N_DRAIN


async def _submit_raw(server: LocalRekor, requests: list[dict[str, Any]]) -> int:
    async with AsyncRekorV1Client(
        server.url,
        public_key=server.public_key_pem,
        verifier=parse_verifier_key(server.v1_vkey),
    ) as client:
        return len(await client.submit_many(requests))


# The raw client's rate in this run, for the worker cases.
_RAW: dict[str, float] = {}


def test_drain_async_client_raw(benchmark: Any, server: LocalRekor) -> None:
    batches = _batches(ROUNDS)
    result = measure(
        benchmark,
        lambda: asyncio.run(_submit_raw(server, next(batches))),
        ops=N_DRAIN,
        baseline="test_drain_baseline_httpx_with_retries",
        rounds=ROUNDS,
        note="verified async submit_many, 16 in flight",
    )
    assert result == N_DRAIN
    if "per_s" in benchmark.extra_info:
        _RAW["per_s"] = benchmark.extra_info["per_s"]


def _queues(tmp: Path, backend: QueueBackend, rounds: int) -> Iterator[SubmissionQueue]:
    """A fresh queue of ``N_DRAIN`` pending entries per round (filled before timing)."""
    queues = []
    for requests in _batches(rounds):
        q = SubmissionQueue(_fresh(tmp))
        q.enqueue_many(requests, backend=backend)
        queues.append(q)
    return iter(queues)


def _drain(q: SubmissionQueue) -> int:
    report = asyncio.run(SubmissionWorker(q, concurrency=16).run(once=True))
    q.close()
    return report.done


def test_drain_queue_worker(benchmark: Any, server: LocalRekor) -> None:
    backend = QueueBackend(server.url, 1, public_key=server.public_key_pem, vkey=server.v1_vkey)
    with tempfile.TemporaryDirectory() as tmp:
        pending = _queues(Path(tmp), backend, ROUNDS)
        result = measure(
            benchmark,
            lambda: _drain(next(pending)),
            ops=N_DRAIN,
            baseline="test_drain_baseline_httpx_with_retries",
            rounds=ROUNDS,
            note="claim, verified submit, receipt committed; 16 in flight",
        )
        assert result == N_DRAIN
    info = benchmark.extra_info
    if "per_s" in info and "per_s" in _RAW:
        info["raw_client_per_s"] = _RAW["per_s"]
        info["vs_raw_client"] = info["per_s"] / _RAW["per_s"]


def test_drain_queue_worker_paired_with_raw_client(benchmark: Any, server: LocalRekor) -> None:
    backend = QueueBackend(server.url, 1, public_key=server.public_key_pem, vkey=server.v1_vkey)
    raw_batches = _batches(PAIRED_ROUNDS)
    raw_times: list[float] = []
    # CPU seconds of this process (every thread) per round: load moves them far less.
    cpu: dict[str, list[float]] = {"raw": [], "worker": []}

    def raw_round() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # pytest-benchmark runs this untimed before each timed worker round.
        start, cpu_start = time.perf_counter(), time.process_time()
        assert asyncio.run(_submit_raw(server, next(raw_batches))) == N_DRAIN
        raw_times.append(time.perf_counter() - start)
        cpu["raw"].append(time.process_time() - cpu_start)
        return (next(pending),), {}

    def worker_round(q: SubmissionQueue) -> int:
        cpu_start = time.process_time()
        done = _drain(q)
        cpu["worker"].append(time.process_time() - cpu_start)
        return done

    with tempfile.TemporaryDirectory() as tmp:
        pending = _queues(Path(tmp), backend, PAIRED_ROUNDS)
        result = benchmark.pedantic(
            worker_round,
            setup=raw_round,
            rounds=1 if QUICK else PAIRED_ROUNDS,
            warmup_rounds=0 if QUICK else 1,
        )
    assert result == N_DRAIN
    stats = getattr(benchmark, "stats", None)
    info = benchmark.extra_info
    info.update(ops=N_DRAIN, baseline="raw async client, alternating rounds")
    info["note"] = "worker vs raw submit_many, each round right after a raw one; median of ratios"
    if stats is not None:
        worker_times = stats.stats.data[-len(raw_times) :]
        pairs = list(zip(raw_times[-len(worker_times) :], worker_times, strict=True))
        info["per_s"] = N_DRAIN / stats.stats.median
        info["baseline_per_s"] = N_DRAIN / statistics.median(raw_times)
        info["ratio"] = statistics.median(raw / worker for raw, worker in pairs)
        info["worker_time_over_raw"] = [round(worker / raw, 3) for raw, worker in pairs]
        for name, seconds in cpu.items():
            info[f"{name}_cpu_us_per_item"] = round(statistics.median(seconds) / N_DRAIN * 1e6)
