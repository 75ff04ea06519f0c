"""``rekorkit verify`` over awkward networks: a stdlib static server, 503s, fixed overrides.

``python -m http.server`` speaks HTTP/1.0 (a connection per request) with a
listen backlog of 5: a client that opens many connections at once loses SYNs
and waits out one-second retransmits. The default (adaptive) run must
complete and verify there; how fast it is beside ``--concurrency 1`` is
measured in ``benches/bench_network.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from rekorkit.audit import verify_tile_log
from rekorkit.cli import main
from rekorkit.client import AsyncTileReader, RetryPolicy
from rekorkit.client.adaptive import AdaptiveWindow, WindowGate, WindowPolicy
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server

SEEDED = 3000  # 11 full tiles and a partial one


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
    with start_server(tmp_path_factory.mktemp("log"), seed=SEEDED, fsync=False) as srv:
        yield srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def static_url(log: LocalRekor) -> Iterator[str]:
    """``python -m http.server`` (HTTP/1.0, backlog 5) over the log's tile directory."""
    port = _free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    cmd += ["--directory", str(log.data_dir / "tiles")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/checkpoint", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("python -m http.server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    status = main(["verify", *argv, "--no-store", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    return report  # type: ignore[no-any-return]


def test_default_flags_complete_against_the_stdlib_server(
    log: LocalRekor, static_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _verify(capsys, static_url, "--key", log.checkpoint_vkey)
    assert report["entries"] == SEEDED and report["checkpoint_size"] == SEEDED
    fixed = _verify(capsys, static_url, "--key", log.checkpoint_vkey, "--concurrency", "1")
    assert fixed["root_hash"] == report["root_hash"]


def test_adaptive_engine_through_503s(log: LocalRekor) -> None:
    """A fifth of tile reads answer 503: the adaptive run backs off, retries, and verifies."""
    log.set_faults({"status": 503, "fraction": 0.2, "path_prefix": "/tile/"}, seed=3)
    try:

        async def run() -> int:
            retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)
            async with AsyncTileReader(log.url, max_concurrency=64, retry=retry) as reader:
                report = await verify_tile_log(reader, parse_verifier_key(log.checkpoint_vkey))
            return report.entries

        assert asyncio.run(run()) == SEEDED
    finally:
        log.clear_faults()


def test_concurrency_flag_is_a_fixed_override(
    log: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _verify(capsys, log.url, "--key", log.checkpoint_vkey, "--concurrency", "3")
    assert report["entries"] == SEEDED
    status = main(["verify", log.url, "--key", log.checkpoint_vkey, "--concurrency", "0"])
    assert status == 2
    assert "--concurrency must be >= 1" in capsys.readouterr().err


def test_max_concurrency_caps_the_adapted_window(
    log: LocalRekor, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--max-concurrency N`` is the adaptive window's ceiling: it adapts, never past N."""
    seen: list[tuple[int, int]] = []
    real = AdaptiveWindow.on_sample

    def watched(self: AdaptiveWindow, latency: float, now: float, **kw: bool) -> None:
        real(self, latency, now, **kw)
        seen.append((self.policy.ceiling, self.limit))

    monkeypatch.setattr(AdaptiveWindow, "on_sample", watched)
    report = _verify(capsys, log.url, "--key", log.checkpoint_vkey, "--max-concurrency", "5")
    assert report["entries"] == SEEDED
    assert seen and {c for c, _ in seen} == {5}
    assert max(limit for _, limit in seen) <= 5
    status = main(["verify", log.url, "--key", log.checkpoint_vkey, "--max-concurrency", "0"])
    assert status == 2
    assert "--max-concurrency must be >= 1" in capsys.readouterr().err


def test_fixed_concurrency_bounds_requests_in_flight(log: LocalRekor) -> None:
    """``concurrency=N`` never has more than N tile and bundle reads in flight."""
    peak = in_flight = 0

    async def run() -> int:
        async with AsyncTileReader(log.url, max_concurrency=64) as reader:
            original = reader.entry_bundle

            async def counted(index: int, width: int = 256) -> bytes:
                nonlocal peak, in_flight
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await asyncio.sleep(0.002)
                    return await original(index, width)
                finally:
                    in_flight -= 1

            reader.entry_bundle = counted  # type: ignore[method-assign]
            report = await verify_tile_log(
                reader, parse_verifier_key(log.checkpoint_vkey), concurrency=2
            )
        return report.entries

    assert asyncio.run(run()) == SEEDED
    assert peak == 2


class _Recording(AdaptiveWindow):
    """An adaptive window that keeps the connect times and samples it was told."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__(policy)
        self.connects: list[float] = []
        self.samples = 0

    def on_connect(self, seconds: float, now: float) -> None:
        self.connects.append(seconds)
        super().on_connect(seconds, now)

    def on_sample(self, latency: float, now: float, *, congested: bool = False) -> None:
        self.samples += 1
        super().on_sample(latency, now, congested=congested)


def test_reader_batches_and_the_engine_share_the_readers_adaptive_gate(log: LocalRekor) -> None:
    """By default ``AsyncTileReader``'s batch calls and ``verify_tile_log`` read through
    ``reader.gate``, an adaptive window fed each read's latency and each connect's time."""
    ids = [(i, 256) for i in range(SEEDED // 256)]

    async def run() -> tuple[list[bytes], list[bytes], int]:
        async with AsyncTileReader(log.url, max_concurrency=32) as reader:
            assert isinstance(reader.gate.window, AdaptiveWindow)
            assert reader.gate.window.policy.ceiling == 32
            window = _Recording(WindowPolicy(ceiling=32))
            reader.gate = WindowGate(window)
            batch = await reader.entry_bundles(ids)
            one_by_one = [await reader.entry_bundle(i, w) for i, w in ids]
            assert window.samples == len(ids)  # single reads are not gated
            report = await verify_tile_log(reader, parse_verifier_key(log.checkpoint_vkey))
            assert report.entries == SEEDED
            assert window.samples >= 3 * len(ids)  # the engine's tiles and bundles too
            assert window.connects and all(0 < c < 10 for c in window.connects)
            return batch, one_by_one, window.limit

    batch, one_by_one, limit = asyncio.run(run())
    assert batch == one_by_one
    assert 1 <= limit <= 32


def test_a_fixed_gate_bounds_the_readers_batches(log: LocalRekor) -> None:
    peak = in_flight = 0

    async def run() -> list[bytes]:
        async with AsyncTileReader(log.url, max_concurrency=64) as reader:
            reader.gate = WindowGate(3)
            original = reader.tile

            async def counted(level: int, index: int, width: int = 256) -> bytes:
                nonlocal peak, in_flight
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await asyncio.sleep(0.002)
                    return await original(level, index, width)
                finally:
                    in_flight -= 1

            reader.tile = counted  # type: ignore[method-assign]
            return await reader.tiles([(0, i, 256) for i in range(SEEDED // 256)])

    assert len(asyncio.run(run())) == SEEDED // 256
    assert peak == 3
