"""``rekorkit monitor`` as a real process: kill -9 mid catch-up, SIGTERM, --test-alert."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
from rekorkit import tiles
from rekorkit.client import TileReader
from rekorkit.testing import LocalRekor, start_server

DIGEST = re.compile(rb'"(?:hash|payloadHash)":\{"algorithm":"sha256","value":"([0-9a-f]{64})"')


def _digests(srv: LocalRekor, indices: list[int], size: int) -> list[str]:
    """Artifact digests of the first hashedrekord entry at or after each index (from the tiles)."""
    out = []
    with TileReader(srv.url) as reader:
        for i in indices:
            width = min(256, size - i // 256 * 256)
            bundle = tiles.parse_entry_bundle(reader.entry_bundle(i // 256, width))
            body = next(b for b in bundle[i % 256 :] if b"hashedrekord" in b[:60])
            found = DIGEST.search(body)
            assert found is not None
            out.append(found.group(1).decode())
    return out


def _write_config(path: Path, srv: LocalRekor, digests: list[str], **extra: object) -> None:
    lines = [
        'db = "monitor.duckdb"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        "[[logs]]",
        'name = "local"',
        f'url = "{srv.url}"',
        f'key = "{srv.checkpoint_vkey}"',
        "poll_interval = 0.2",
        "max_batch = 25000",
        "[watchlist]",
        f"digests = {json.dumps(digests)}",
        "[[publishers]]",
        'type = "jsonl"',
        'path = "alerts.jsonl"',
    ]
    path.write_text("\n".join(lines) + "\n")


def _monitor(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rekorkit.cli", "monitor", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], pattern: str, limit: float = 60.0) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}")


def test_kill_9_during_catch_up_loses_and_repeats_nothing(tmp_path: Path) -> None:
    n = 200_000
    with start_server(seed=n) as srv:
        watched = [5, 60_000, 123_456, 199_900]
        digests = _digests(srv, watched, n)
        config = tmp_path / "monitor.toml"
        _write_config(config, srv, digests)
        proc = _monitor(config)
        _wait_for(proc, r"stored \d+ entries up to 50000 ")
        time.sleep(0.05)  # land inside the next step
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        con = duckdb.connect(str(tmp_path / "monitor.duckdb"), read_only=True)
        [(partial,)] = con.execute("SELECT count(*) FROM entries").fetchall()
        con.close()
        assert 50_000 <= partial < n  # killed mid catch-up

        again = _monitor(config, "--once")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert json.loads(out)["local"]["frontier"] == n
        root = httpx.get(srv.url + "/checkpoint").text.split("\n")[2]

    con = duckdb.connect(str(tmp_path / "monitor.duckdb"), read_only=True)
    try:
        total, distinct, lo, hi = con.execute(
            "SELECT count(*), count(DISTINCT log_index), min(log_index), max(log_index) "
            "FROM entries"
        ).fetchone()  # type: ignore[misc]
        assert (total, distinct, lo, hi) == (n, n, 0, n - 1)  # every entry exactly once
        assert con.execute("SELECT start_index, end_index FROM verified_ranges").fetchall() == [
            (0, n)
        ]
        [(size, fr_root)] = con.execute("SELECT size, root_hash FROM frontiers").fetchall()
        assert size == n and bytes(fr_root).hex() == __import__("base64").b64decode(root).hex()
        sizes = [r[0] for r in con.execute("SELECT size FROM checkpoints ORDER BY size").fetchall()]
        assert sizes[-1] == n and all(s <= n for s in sizes)
        keys = [r[0] for r in con.execute("SELECT key FROM monitor_alerts").fetchall()]
        wanted = " OR ".join(f"contains(decode(body), '{d}')" for d in digests)
        [(expected,)] = con.execute(f"SELECT count(*) FROM entries WHERE {wanted}").fetchall()
    finally:
        con.close()
    assert len(watched) <= expected < 1000
    assert len(keys) == len(set(keys)) == expected  # every match, once
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == expected  # none lost, none sent twice


def test_sigterm_finishes_the_step_and_exits_cleanly(tmp_path: Path) -> None:
    with start_server(seed=60_000) as srv:
        config = tmp_path / "monitor.toml"
        _write_config(config, srv, [], metrics_port=0)
        proc = _monitor(config)
        assert proc.stdout is not None
        port_line = proc.stdout.readline()
        url = re.search(r"http://\S+", port_line)
        assert url is not None, port_line
        _wait_for(proc, r"stored \d+ entries up to 25000 ")
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
    con = duckdb.connect(str(tmp_path / "monitor.duckdb"), read_only=True)
    try:
        ranges = con.execute("SELECT start_index, end_index FROM verified_ranges").fetchall()
        frontier = con.execute("SELECT size FROM frontiers").fetchall()
    finally:
        con.close()
    assert len(ranges) == 1 and ranges[0][0] == 0 and ranges[0][1] % 25_000 == 0  # whole steps
    assert frontier in ([], [(60_000,)]) and (frontier == [] or ranges[0][1] == 60_000)


def test_healthz_and_metrics_and_test_alert(tmp_path: Path) -> None:
    with start_server(seed=500) as srv:
        config = tmp_path / "monitor.toml"
        _write_config(config, srv, [], metrics_port=0)
        proc = _monitor(config)
        try:
            assert proc.stdout is not None
            base = re.search(r"http://\S+", proc.stdout.readline())
            assert base is not None
            _wait_for(proc, r"stored 500 entries")
            health = httpx.get(base.group(0) + "/healthz").json()
            for _ in range(50):
                if health["logs"]["local"]["frontier"] == 500:
                    break
                time.sleep(0.1)
                health = httpx.get(base.group(0) + "/healthz").json()
            assert health["status"] == "ok" and health["logs"]["local"]["lag"] == 0
            metrics = httpx.get(base.group(0) + "/metrics").text
            assert 'rekorkit_monitor_entries_total{log="local"} 500.0' in metrics
            assert 'rekorkit_monitor_frontier{log="local"} 500.0' in metrics
            assert httpx.post(base.group(0) + "/healthz").status_code == 405
            assert httpx.get(base.group(0) + "/nope").status_code == 404
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        test = _monitor(config, "--test-alert")
        out, _ = test.communicate(timeout=60)
        assert test.returncode == 0
        assert json.loads(out) == {f"jsonl:{tmp_path / 'alerts.jsonl'}": None}
        [line] = (tmp_path / "alerts.jsonl").read_text().splitlines()
        assert json.loads(line)["kind"] == "test"


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text('[[logs]]\nname = "x"\n')
    proc = _monitor(config, "--once")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "url is required" in err and "logs[0]" in err
