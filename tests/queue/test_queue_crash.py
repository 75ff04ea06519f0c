"""Crashes with real processes: kill -9 of the worker, of the log, and two workers on one file.

In each case every queued entry must end in the log exactly once, checked in
the log itself: every level-0 tile is read and its leaf hashes counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from queue_requests import dsse, v1_backend
from rekorkit import tiles
from rekorkit.client import RetryPolicy
from rekorkit.queue import State, SubmissionQueue, SubmissionWorker
from rekorkit.testing import LocalRekor, start_server


def worker_process(queue: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "rekorkit.cli", "queue", "work", "--once", "--json"]
    cmd += ["--queue", str(queue), "--lease", "2", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def log_leaves(url: str) -> Counter[bytes]:
    """Every leaf hash in the log, counted, from its level-0 tiles."""
    size = httpx.get(url + "/healthz").json()["size"]
    counts: Counter[bytes] = Counter()
    for tile in tiles.level0_tiles(0, size, size):
        data = httpx.get(f"{url}/{tile.path}").content
        counts.update(bytes(h) for h in tiles.parse_hash_tile(data, tile.width))
    return counts


def assert_logged_exactly_once(queue: SubmissionQueue, url: str, ids: list[str]) -> None:
    subs = [queue.get(i) for i in ids]
    assert Counter(s.state for s in subs) == {State.DONE: len(ids)}
    leaves = log_leaves(url)
    assert all(leaves[s.leaf_hash] == 1 for s in subs), "an entry is missing or duplicated"
    assert sum(leaves.values()) == len(ids)  # nothing else was logged either
    assert sorted(s.log_index for s in subs) == list(range(len(ids)))  # type: ignore[type-var]


def test_worker_killed_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(1313)
    path = tmp_path / "q.sqlite"
    with start_server() as srv, SubmissionQueue(path) as queue:
        ids = queue.enqueue_many([dsse(i) for i in range(1000)], backend=v1_backend(srv))
        kills = 0
        for _ in range(4):
            proc = worker_process(path)
            before, deadline = queue.status().by_state["done"], time.monotonic() + 20
            while queue.status().by_state["done"] == before and time.monotonic() < deadline:
                time.sleep(0.02)  # wait for this worker to make progress, then kill it
            time.sleep(rng.uniform(0.0, 0.6))
            if proc.poll() is not None:
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
        assert kills >= 2, "the drain finished before the worker could be killed"
        progress = queue.status().by_state
        assert progress["done"] > 0
        proc = worker_process(path)  # the last run: expired leases come back
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        report = json.loads(out)
        assert report["open"] == 0 and report["dead"] == 0
        assert_logged_exactly_once(queue, srv.url, ids)


def test_log_killed_and_restarted_mid_drain(tmp_path: Path) -> None:
    data = tmp_path / "log"
    srv = start_server(data, subprocess=True)
    port = srv.url.rsplit(":", 1)[1]
    restarted: list[LocalRekor] = []
    with SubmissionQueue(tmp_path / "q.sqlite") as queue:
        ids = queue.enqueue_many([dsse(i) for i in range(300)], backend=v1_backend(srv))
        worker = SubmissionWorker(
            queue,
            lease=10,
            poll_interval=0.05,
            breaker_reset=0.5,
            retry=RetryPolicy(max_attempts=50, base_delay=0.1, max_delay=0.5),
        )
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(asyncio.run(worker.run(once=True, handle_signals=False)))
        )
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while queue.status().by_state["done"] < 50 and time.monotonic() < deadline:
                time.sleep(0.02)
            srv.kill()  # kill -9 mid-drain
            time.sleep(1.0)
            restarted.append(start_server(data, subprocess=True, extra_args=("--port", port)))
            thread.join(timeout=60)
            assert not thread.is_alive()
            report = result[0]
            assert report.done == 300 and report.dead == 0  # type: ignore[attr-defined]
            assert queue.status().by_state["done"] == 300
            assert any(s.errors for s in (queue.get(i) for i in ids)), "the outage went unseen"
            assert_logged_exactly_once(queue, restarted[0].url, ids)
        finally:
            worker.stop()
            thread.join(timeout=30)
            for s in restarted:
                s.stop()
            srv.stop()


def test_two_workers_never_submit_an_item_twice(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with start_server() as srv, SubmissionQueue(path) as queue:
        ids = queue.enqueue_many([dsse(i) for i in range(400)], backend=v1_backend(srv))
        srv.set_faults(  # counts every write, changes nothing
            {
                "action": "latency",
                "latency": 0,
                "method": "POST",
                "path_prefix": "/api/v1/log/entries",
            }
        )
        procs = [worker_process(path, "--concurrency", "8") for _ in range(2)]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
        assert sum(r["done"] for r in reports) == 400
        assert all(r["done"] > 0 for r in reports), "one worker did everything: no concurrency"
        assert sum(r["lost_leases"] for r in reports) == 0
        posts = srv._admin("GET", "/_rekorkit/faults")["rules"][0]["hits"]
        assert posts == 400  # one write per entry: no item was sent by both workers
        assert_logged_exactly_once(queue, srv.url, ids)
