"""Operating the worker: /healthz, /metrics, outcome logs and SIGTERM, with real processes."""

from __future__ import annotations

import asyncio
import json
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from queue_requests import dsse, v1_backend
from rekorkit.errors import StoreError
from rekorkit.queue import QueueCounts, SQLiteQueueStorage, State, SubmissionQueue, SubmissionWorker
from rekorkit.testing import start_server


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample's value from the Prometheus text format (0 when absent)."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def read_line_with(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """The first stderr line starting with ``needle`` (bounded wait)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            if line.startswith(needle):
                return line
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {needle!r} on stderr within {timeout} s")


def test_worker_process_serves_health_and_metrics_and_finishes_in_flight_on_sigterm(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.sqlite"
    with start_server() as srv, SubmissionQueue(path) as queue:
        ids = queue.enqueue_many([dsse(i) for i in range(40)], backend=v1_backend(srv))
        # Slow writes: items are in flight for a while when SIGTERM comes.
        srv.set_faults({"action": "latency", "latency": 0.4, "method": "POST"})
        cmd = [sys.executable, "-m", "rekorkit.cli", "queue", "work", "--queue", str(path)]
        cmd += ["--metrics-port", "0", "--concurrency", "4", "--log-level", "info", "--log-json"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = read_line_with(proc, "metrics on ", 30).split("metrics on ", 1)[1].strip()
            assert url.startswith("http://127.0.0.1:")
            deadline, logged = time.monotonic() + 30, 0.0
            while logged < 4 and time.monotonic() < deadline:
                text = httpx.get(url + "/metrics", timeout=5).text
                logged = metric(text, "rekorkit_queue_submissions_total", 'outcome="logged"')
                time.sleep(0.1)
            assert logged >= 4, "the counters did not move while draining"
            assert metric(text, "rekorkit_queue_submit_latency_seconds_count") >= logged
            assert metric(text, "rekorkit_queue_attempts_total", 'result="ok"') >= logged
            assert metric(text, "rekorkit_queue_depth", 'state="pending"') > 0
            health = httpx.get(url + "/healthz", timeout=5)
            assert health.status_code == 200
            doc = health.json()
            assert doc["status"] == "ok" and set(doc["states"]) == {s.value for s in State}
            assert sum(doc["states"].values()) == 40 and doc["last_error"] is None
            assert httpx.get(url + "/nope", timeout=5).status_code == 404

            in_flight = 0.0
            while in_flight == 0 and time.monotonic() < deadline:
                in_flight = metric(httpx.get(url + "/metrics").text, "rekorkit_queue_in_flight")
            assert in_flight > 0
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == 0, err
        states = queue.status().by_state
        # What was in flight finished and was recorded; nothing is left leased.
        assert states["leased"] == 0 and states["dead"] == 0
        assert 0 < states["done"] < 40 and states["done"] + states["pending"] == 40
        assert httpx.get(srv.url + "/healthz").json()["size"] == states["done"]
        records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        outcomes = [r for r in records if r.get("event") == "outcome"]
        assert {r["submission"] for r in outcomes} == {
            i for i in ids if queue.get(i).state == State.DONE
        }
        assert all(r["outcome"] == "logged" and r["log_index"] >= 0 for r in outcomes)


class _FlakyStorage(SQLiteQueueStorage):
    """SQLite storage whose counts fail on demand, as an unreachable store's would."""

    broken = False

    def counts(self, *, now: float) -> QueueCounts:
        if self.broken:
            raise StoreError("queue file unreachable (test)")
        return super().counts(now=now)


def test_healthz_is_503_when_the_store_fails_or_the_worker_stops(tmp_path: Path) -> None:
    storage = _FlakyStorage(tmp_path / "q.sqlite")
    with start_server() as srv, SubmissionQueue(storage) as queue:
        queue.enqueue(dsse(0), backend=v1_backend(srv))
        srv.set_faults({"action": "status", "status": 503, "method": "POST", "count": 1})
        worker = SubmissionWorker(queue, metrics_port=0, health_interval=0.05, poll_interval=0.05)

        async def scenario() -> list[tuple[int, dict[str, object]]]:
            seen = []
            task = asyncio.ensure_future(worker.run(handle_signals=False))
            await asyncio.wait_for(worker.listening.wait(), 10)
            assert worker.metrics_url is not None
            async with httpx.AsyncClient(base_url=worker.metrics_url, timeout=5) as http:
                for _ in range(100):  # the 503 is retried after a short backoff
                    r = await http.get("/healthz")
                    if r.json().get("last_error") is not None:
                        break
                    await asyncio.sleep(0.05)
                seen.append((r.status_code, r.json()))
                storage.broken = True
                await asyncio.sleep(0.3)
                r = await http.get("/healthz")
                seen.append((r.status_code, r.json()))
                storage.broken = False
                await asyncio.sleep(0.3)
                worker.stop()
                r = await http.get("/healthz")
                seen.append((r.status_code, r.json()))
            await asyncio.wait_for(task, 30)
            return seen

        (ok_code, ok_doc), (broken_code, broken_doc), (stop_code, stop_doc) = asyncio.run(
            scenario()
        )
    assert ok_code == 200 and ok_doc["status"] == "ok"
    last = ok_doc["last_error"]
    assert isinstance(last, dict) and last["status"] == 503
    assert broken_code == 503 and "store unreachable" in str(broken_doc["status"])
    assert "queue file unreachable" in str(broken_doc["status"])
    assert stop_code == 503 and stop_doc["status"] == "stopping"
    assert worker.metrics_url is None  # the endpoint closed with the worker


def test_metrics_count_outcomes_of_an_in_process_drain(tmp_path: Path) -> None:
    with start_server() as srv, SubmissionQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue_many([dsse(i) for i in range(6)], backend=v1_backend(srv))
        srv.set_faults({"action": "status", "status": 429, "method": "POST", "count": 2})
        worker = SubmissionWorker(queue, lease=10, poll_interval=0.05)
        report = asyncio.run(worker.run(once=True, handle_signals=False))
        text = worker.metrics.render().decode()
    assert report.done == 6
    assert metric(text, "rekorkit_queue_submissions_total", 'outcome="logged"') == 6
    assert metric(text, "rekorkit_queue_submissions_total", 'outcome="retry"') == 2
    assert metric(text, "rekorkit_queue_attempts_total", 'result="RateLimitedError"') == 2
    assert metric(text, "rekorkit_queue_in_flight") == 0
    assert metric(text, "rekorkit_queue_depth", 'state="done"') == 6
    assert metric(text, "rekorkit_queue_oldest_due_age_seconds") == 0
