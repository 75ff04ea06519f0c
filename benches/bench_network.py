"""Verification over a slow link and from a small static server, beside their baselines.

* **50 ms round trip**: the local log behind a latency-injecting TCP proxy
  (25 ms each way, a child process, bytes delayed in order so the link still
  pipelines; a new connection's first request waits a round trip more, the
  TCP handshake's). ``verify_tile_log`` with the default adaptive window, with fixed
  ``concurrency`` values, and a sequential reader (one request at a time, as
  monitors read today: ``concurrency=1``, a tile and a bundle per 256 entries,
  the same checks) as the baseline, all in the same run. Targets
  (issue 16): the adaptive run reaches >= 80 % of the best fixed rate and
  >= 50x the sequential reader.
* **loopback**: the local log itself, default flags vs ``--concurrency 16``
  (the default before the adaptive window; target: no slower).
* **python -m http.server**: HTTP/1.0 (a connection per request), listen
  backlog 5, on loopback; default flags vs ``--concurrency 1`` (target: no
  slower than 1.2x, i.e. a ratio >= 0.83).

``REKORKIT_BENCH_QUICK=1`` shrinks every input. Run directly with
``--proxy UPSTREAM_PORT DELAY`` to start only the latency proxy.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import QUICK, measure
from rekorkit.audit import verify_tile_log
from rekorkit.client import AsyncTileReader
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server

# The log: 300,000 entries (1,172 tiles, each read with its bundle).
SEEDED = 4096 if QUICK else 300_000
SEQUENTIAL = 1024 if QUICK else 8192  # entries the one-at-a-time reader verifies
ONE_WAY = 0.025
CEILING = 256
_FIXED: dict[int, float] = {}


# -- the latency proxy (runs in a child process) -------------------------------
async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, first: float = 0.0
) -> None:
    """Copy bytes, each chunk delivered ``delay`` seconds after it arrived, in order.

    The first chunk waits ``first`` seconds more. One timer per chunk and no
    task: the link emulator's own CPU time should not be what the benchmark
    measures (a real link costs the client none).
    """
    loop = asyncio.get_running_loop()
    due = loop.time() + delay + first  # no chunk leaves before the first could

    def later(data: bytes) -> None:
        nonlocal due
        due = max(loop.time() + delay, due + 1e-6)  # strictly increasing: FIFO timers
        if data:
            loop.call_at(due, writer.write, data)
        else:
            loop.call_at(due, writer.close)

    try:
        while data := await reader.read(65536):
            later(data)
    except ConnectionError:
        pass
    later(b"")


async def _serve_proxy(upstream: int, delay: float) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            w.close()
            return
        # The client's connect returns at once here, but over a real link its
        # request leaves only after the handshake's round trip: the request
        # reaches the server 1.5 round trips after the connect began, not 0.5.
        await asyncio.gather(_pump(r, uw, delay, first=2 * delay), _pump(ur, w, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def _start_proxy(upstream_url: str, delay: float) -> tuple[subprocess.Popen[str], str]:
    port = upstream_url.rsplit(":", 1)[1]
    cmd = [sys.executable, __file__, "--proxy", port, str(delay)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError("the latency proxy did not start")
    return proc, f"http://127.0.0.1:{line}"


# -- fixtures ------------------------------------------------------------------
@dataclass
class Setup:
    log: LocalRekor
    slow_url: str
    static_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    tmp = Path(tempfile.mkdtemp(prefix="rekorkit-bench-net-"))
    log = start_server(tmp / "log", subprocess=True, faults=False, seed=SEEDED, fsync=False)
    proxy, slow_url = _start_proxy(log.url, ONE_WAY)
    port = _free_port()
    serve = ["http.server", str(port), "--bind", "127.0.0.1"]
    static = subprocess.Popen(
        [sys.executable, "-m", *serve, "--directory", str(tmp / "log" / "tiles")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    static_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(static_url + "/checkpoint", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield Setup(log, slow_url, static_url)
    finally:
        for proc in (proxy, static):
            proc.terminate()
            proc.wait(timeout=30)
        log.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _verify(url: str, vkey: str, concurrency: int | None, *, end: int | None = None) -> int:
    """``rekorkit verify --no-store`` as the command runs it: ``None`` is the default (adaptive)."""

    async def run() -> int:
        async with AsyncTileReader(url, max_concurrency=concurrency or CEILING) as reader:
            report = await verify_tile_log(
                reader, parse_verifier_key(vkey), concurrency=concurrency, end=end
            )
        return report.entries

    return asyncio.run(run())


# -- 50 ms round trip ----------------------------------------------------------
def test_slow_link_sequential(benchmark: Any, setup: Setup) -> None:
    n = measure(
        benchmark,
        lambda: _verify(setup.slow_url, setup.log.checkpoint_vkey, 1, end=SEQUENTIAL),
        ops=SEQUENTIAL,
        rounds=1,
        note="50 ms RTT proxy: one request at a time (a sequential reader)",
    )
    assert n == SEQUENTIAL


@pytest.mark.parametrize("fixed", [16, 64, 128, 256])
def test_slow_link_fixed(benchmark: Any, setup: Setup, fixed: int) -> None:
    n = measure(
        benchmark,
        lambda: _verify(setup.slow_url, setup.log.checkpoint_vkey, fixed),
        ops=SEEDED,
        baseline="test_slow_link_sequential",
        rounds=5,
        note=f"50 ms RTT proxy: --concurrency {fixed}",
    )
    assert n == SEEDED
    if benchmark.stats is not None:
        _FIXED[fixed] = SEEDED / benchmark.stats.stats.median


def test_slow_link_adaptive(benchmark: Any, setup: Setup) -> None:
    n = measure(
        benchmark,
        lambda: _verify(setup.slow_url, setup.log.checkpoint_vkey, None),
        ops=SEEDED,
        baseline="test_slow_link_sequential",
        rounds=5,
        note="50 ms RTT proxy: default flags (adaptive window, ceiling 256) vs sequential",
    )
    assert n == SEEDED
    if benchmark.stats is not None and _FIXED:
        rate = SEEDED / benchmark.stats.stats.median
        best = max(_FIXED, key=lambda k: _FIXED[k])
        benchmark.extra_info.update(
            best_fixed=best,
            best_fixed_per_s=round(_FIXED[best]),
            of_best_fixed=round(rate / _FIXED[best], 3),
            fixed_per_s={k: round(v) for k, v in sorted(_FIXED.items())},
        )


def _whole_log(
    benchmark: Any, url: str, vkey: str, concurrency: int | None, note: str, baseline: str | None
) -> None:
    """Verify the whole seeded log from ``url``, three timed rounds, paired with ``baseline``."""
    n = measure(
        benchmark,
        lambda: _verify(url, vkey, concurrency),
        ops=SEEDED,
        baseline=baseline,
        rounds=3,
        note=note,
    )
    assert n == SEEDED


# -- loopback (the local log, no added latency) ----------------------------------
def test_loopback_concurrency_16(benchmark: Any, setup: Setup) -> None:
    note = "loopback: --concurrency 16 (the default before issue 16)"
    _whole_log(benchmark, setup.log.url, setup.log.checkpoint_vkey, 16, note, None)


def test_loopback_default(benchmark: Any, setup: Setup) -> None:
    note = "loopback: default flags (adaptive) vs --concurrency 16"
    baseline = "test_loopback_concurrency_16"
    _whole_log(benchmark, setup.log.url, setup.log.checkpoint_vkey, None, note, baseline)


# -- python -m http.server (HTTP/1.0, backlog 5) -------------------------------
def test_stdlib_server_concurrency_1(benchmark: Any, setup: Setup) -> None:
    note = "python -m http.server: --concurrency 1"
    _whole_log(benchmark, setup.static_url, setup.log.checkpoint_vkey, 1, note, None)


def test_stdlib_server_default(benchmark: Any, setup: Setup) -> None:
    note = "python -m http.server: default flags vs --concurrency 1"
    baseline = "test_stdlib_server_concurrency_1"
    _whole_log(benchmark, setup.static_url, setup.log.checkpoint_vkey, None, note, baseline)


if __name__ == "__main__" and sys.argv[1:2] == ["--proxy"]:
    asyncio.run(_serve_proxy(int(sys.argv[2]), float(sys.argv[3])))
