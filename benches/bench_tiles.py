"""Tile benchmarks, each beside a pure-Python (hashlib) baseline on the same input.

* entry bundle parse + leaf-hash + compare against its level-0 tile: many
  bundles of 256 x 700-byte entries (what a monitor does per tile), one
  thread and all threads, vs a ``int.from_bytes`` + ``hashlib`` loop;
* ``TileAppender.append`` throughput (what a log server does per batch) vs a
  pure-Python appender keeping the same partial tiles.

``REKORKIT_BENCH_QUICK=1`` shrinks inputs so the file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rekorkit.tiles import TileAppender, encode_entry_bundle, verify_bundles_against_tiles

QUICK = os.environ.get("REKORKIT_BENCH_QUICK") == "1"
N_BUNDLES = 4 if QUICK else 120
ENTRY_SIZE = 700
N_LEAVES = 1 << 13 if QUICK else 1 << 20
APPEND_BATCH = 1000
ROUNDS = 1 if QUICK else 3


def timed(fn: Callable[[], Any], rounds: int = ROUNDS) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``rounds`` runs, and its last result."""
    times, result = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


# --- entry bundles against level-0 tiles ------------------------------------------


def _bundles(n: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(7)
    bundles, tiles = [], []
    for _ in range(n):
        entries = [rng.randbytes(ENTRY_SIZE) for _ in range(256)]
        bundles.append(encode_entry_bundle(entries))
        tiles.append(b"".join(hashlib.sha256(b"\x00" + e).digest() for e in entries))
    return bundles, tiles


def baseline_verify_bundle(bundle: bytes, tile: bytes) -> int:
    """Parse the uint16 length prefixes, leaf-hash, compare: the plain Python way."""
    off, j, n = 0, 0, len(bundle)
    sha = hashlib.sha256
    while off < n:
        if off + 2 > n:
            raise ValueError(f"dangling length at byte {off}")
        length = int.from_bytes(bundle[off : off + 2], "big")
        start = off + 2
        if start + length > n:
            raise ValueError(f"entry {j} runs past the end")
        if sha(b"\x00" + bundle[start : start + length]).digest() != tile[32 * j : 32 * j + 32]:
            raise ValueError(f"mismatch at entry {j}")
        off = start + length
        j += 1
    if 32 * j != len(tile):
        raise ValueError("count mismatch")
    return j


def test_bundle_verify_against_tile(benchmark: Any) -> None:
    """Parse + hash + compare 256 x 700-byte bundles against their level-0 tiles."""
    bundles, tiles = _bundles(N_BUNDLES)
    indices = list(range(N_BUNDLES))
    entries = 256 * N_BUNDLES
    nbytes = sum(len(b) for b in bundles)

    def ours() -> int:
        verify_bundles_against_tiles(bundles, tiles, indices, threads=1)
        return entries

    def all_threads() -> int:
        verify_bundles_against_tiles(bundles, tiles, indices)
        return entries

    def baseline() -> int:
        return sum(baseline_verify_bundle(b, t) for b, t in zip(bundles, tiles, strict=True))

    t_base, r_base = timed(baseline)
    t_ours, r_ours = timed(ours)
    t_all, r_all = timed(all_threads)
    assert r_base == r_ours == r_all == entries
    # A flipped hash must be caught by both, or the timings compare nothing.
    bad = [*tiles[:-1], tiles[-1][:40] + bytes([tiles[-1][40] ^ 1]) + tiles[-1][41:]]
    try:
        verify_bundles_against_tiles(bundles, bad, indices)
    except Exception as exc:
        assert getattr(exc, "evidence", {}).get("position") == 1
    else:
        raise AssertionError("a corrupted tile verified")
    assert benchmark.pedantic(ours, rounds=ROUNDS, iterations=1) == entries
    benchmark.extra_info.update(
        ops=entries,
        baseline="int.from_bytes length + hashlib.sha256 leaf + slice compare per entry",
        entries_per_s=round(entries / t_ours),
        mb_per_s=round(nbytes / t_ours / 1e6, 1),
        baseline_entries_per_s=round(entries / t_base),
        baseline_mb_per_s=round(nbytes / t_base / 1e6, 1),
        ratio=round(t_base / t_ours, 2),
        all_threads_mb_per_s=round(nbytes / t_all / 1e6, 1),
        all_threads_ratio=round(t_base / t_all, 2),
    )


# --- TileAppender --------------------------------------------------------------------


def _py_mth_pow2(hashes: list[bytes]) -> bytes:
    sha = hashlib.sha256
    level = hashes
    while len(level) > 1:
        level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


class PyAppender:
    """Pure-Python twin of TileAppender: partial tiles per level, tiles out."""

    def __init__(self) -> None:
        self.edge: list[list[bytes]] = [[] for _ in range(8)]
        self.size = 0

    def append(self, hashes: list[bytes]) -> list[tuple[int, int, int, bytes]]:
        out = []
        dirty = set()
        counts = [self.size >> (8 * lv) for lv in range(8)]
        for h in hashes:
            lv = 0
            while True:
                self.edge[lv].append(h)
                counts[lv] += 1
                dirty.add(lv)
                if len(self.edge[lv]) < 256:
                    break
                full, self.edge[lv] = self.edge[lv], []
                h = _py_mth_pow2(full)
                out.append((lv, counts[lv] // 256 - 1, 256, b"".join(full)))
                lv += 1
        self.size += len(hashes)
        for lv in sorted(dirty):
            if self.edge[lv]:
                out.append((lv, counts[lv] // 256, len(self.edge[lv]), b"".join(self.edge[lv])))
        out.sort()
        return out

    def root(self) -> bytes:
        nodes = []
        for lv in range(7, -1, -1):
            e, pos = self.edge[lv], 0
            for b in range(7, -1, -1):
                if len(e) & (1 << b):
                    nodes.append(_py_mth_pow2(e[pos : pos + (1 << b)]))
                    pos += 1 << b
        h = nodes[-1]
        for left in reversed(nodes[:-1]):
            h = hashlib.sha256(b"\x01" + left + h).digest()
        return h


def test_tile_appender_append(benchmark: Any) -> None:
    """Append leaf hashes in batches of 1000 and collect every touched tile."""
    rng = np.random.default_rng(11)
    leaves = rng.integers(0, 256, size=(N_LEAVES, 32), dtype=np.uint8)
    batches = [leaves[i : i + APPEND_BATCH] for i in range(0, N_LEAVES, APPEND_BATCH)]
    py_batches = [[bytes(row) for row in b] for b in batches]

    def ours() -> tuple[int, bytes, int]:
        app = TileAppender()
        written = 0
        for b in batches:
            written += sum(len(d) for _, d in app.append(b))
        return app.size, app.root(), written

    def baseline() -> tuple[int, bytes, int]:
        app = PyAppender()
        written = 0
        for b in py_batches:
            written += sum(len(t[3]) for t in app.append(b))
        return app.size, app.root(), written

    t_base, r_base = timed(baseline, rounds=1)
    t_ours, r_ours = timed(ours)
    assert r_ours == r_base and r_ours[0] == N_LEAVES
    assert benchmark.pedantic(ours, rounds=ROUNDS, iterations=1) == r_base
    benchmark.extra_info.update(
        ops=N_LEAVES,
        baseline="pure-Python partial tiles per level, hashlib tile roots",
        leaves_per_s=round(N_LEAVES / t_ours),
        baseline_leaves_per_s=round(N_LEAVES / t_base),
        ratio=round(t_base / t_ours, 2),
        batch=APPEND_BATCH,
    )
