"""``rekorkit proxy`` as a real process: kill -9 mid-mirror, restart, resume; SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from rekorkit import AsyncTileReader, parse_verifier_key, verify_tile_log
from rekorkit.cli import main
from rekorkit.proxy import start_proxy_process
from rekorkit.testing import start_server
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import level0_tiles

N = 30_000


def _status(url: str) -> dict[str, Any]:
    for _ in range(100):
        try:
            result: dict[str, Any] = httpx.get(url + "/_admin/status", timeout=5).json()
            return result
        except httpx.TransportError:  # still starting its lifespan
            time.sleep(0.05)
    raise AssertionError("no status")


def test_kill_9_mid_mirror_then_resume_and_sigterm(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with start_server(seed=N, fsync=False) as srv:
        args = ("--sync", "mirror", "--interval", "0.2")
        proc, url = start_proxy_process(srv.url, cache_dir, srv.checkpoint_vkey, *args)
        try:
            deadline = time.monotonic() + 30
            while (_status(url)["sync"] or {}).get("mirrored_entries", 0) == 0:
                assert time.monotonic() < deadline, "the mirror made no progress"
                time.sleep(0.01)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with FileSystemTileCache(cache_dir) as cache:
            raw = cache.get_state("proxy.mirror_next_tile")
            assert raw is not None and int(raw) > 0
            # Everything the index names re-hashes to its name.
            for t in level0_tiles(0, N, N):
                cache.get(t)
                cache.get(t, entries=True)
            assert cache.stats().dropped_corrupt == 0

        proc, url = start_proxy_process(srv.url, cache_dir, srv.checkpoint_vkey, *args)
        try:
            deadline = time.monotonic() + 60
            while (_status(url)["sync"] or {}).get("mirrored_entries") != N:
                assert time.monotonic() < deadline, _status(url)
                time.sleep(0.05)
            assert _status(url)["sync"]["last_error"] is None

            async def audit() -> int:
                async with AsyncTileReader(url) as reader:
                    report = await verify_tile_log(reader, parse_verifier_key(srv.checkpoint_vkey))
                return report.entries

            assert asyncio.run(audit()) == N
            metrics = httpx.get(url + "/metrics").text
            assert 'rekorkit_proxy_misses_total{kind="entries"}' not in metrics  # all mirrored
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_bad_key_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    status = main(["proxy", "http://127.0.0.1:9", "--cache", str(tmp_path), "--key", "nope"])
    assert status == 2
    assert "usage error" in capsys.readouterr().err
