"""Tile benchmarks, each case beside a pure-Python (hashlib) baseline on the same input.

Groups:

* entry bundle parse + leaf-hash + compare against its level-0 tile: many
  bundles of 256 x 700-byte entries (what a monitor does per tile), on one
  thread and on all threads, vs an ``int.from_bytes`` + ``hashlib`` loop;
* ``TileAppender.append`` (what a log server does per batch of 1,000 leaf
  hashes, every touched tile returned) vs a pure-Python appender keeping the
  same partial tiles;
* inclusion proofs built from tiles by ``ProofBuilder`` at tree size 7e7 vs a
  pure-Python implementation of c2sp.org/tlog-tiles over the same tile reader.

Baselines are defined first in each group and record their rate; the native
cases record the ratio (``benches/conftest.py``). Every case checks its result,
and the bundle group also checks that a corrupted tile is caught.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import pytest
from conftest import measure, scaled
from rekorkit.errors import TileError
from rekorkit.tiles import (
    ProofBuilder,
    TileAppender,
    encode_entry_bundle,
    verify_bundles_against_tiles,
)

ENTRY_SIZE = 700
N_BUNDLES = scaled(120, 4)
N_LEAVES = scaled(1 << 20, 1 << 13)
APPEND_BATCH = 1000

# --- entry bundles against level-0 tiles ------------------------------------------------------

Bundles = tuple[list[bytes], list[bytes], list[int]]


@pytest.fixture(scope="module")
def bundles() -> Bundles:
    rng = random.Random(7)
    out, tiles = [], []
    for _ in range(N_BUNDLES):
        entries = [rng.randbytes(ENTRY_SIZE) for _ in range(256)]
        out.append(encode_entry_bundle(entries))
        tiles.append(b"".join(hashlib.sha256(b"\x00" + e).digest() for e in entries))
    return out, tiles, list(range(N_BUNDLES))


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


def _bundle_bytes(data: Bundles) -> int:
    return sum(len(b) for b in data[0])


@pytest.mark.benchmark(group="entry bundle vs level-0 tile, 256 x 700 B")
def test_bundle_verify_baseline(benchmark: Any, bundles: Bundles) -> None:
    bs, tiles, _ = bundles

    def run() -> int:
        return sum(baseline_verify_bundle(b, t) for b, t in zip(bs, tiles, strict=True))

    got = measure(benchmark, run, ops=256 * N_BUNDLES, nbytes=_bundle_bytes(bundles), rounds=3)
    assert got == 256 * N_BUNDLES


def _check_corruption_caught(data: Bundles, threads: int | None) -> None:
    bs, tiles, idx = data
    bad = list(tiles)
    bad[-1] = bad[-1][:40] + bytes([bad[-1][40] ^ 1]) + bad[-1][41:]
    with pytest.raises(TileError) as info:
        verify_bundles_against_tiles(bs, bad, idx, threads=threads)
    assert (info.value.evidence["index"], info.value.evidence["position"]) == (idx[-1], 1)


@pytest.mark.benchmark(group="entry bundle vs level-0 tile, 256 x 700 B")
@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "all-threads"])
def test_bundle_verify_native(benchmark: Any, bundles: Bundles, threads: int | None) -> None:
    bs, tiles, idx = bundles

    def run() -> int:
        verify_bundles_against_tiles(bs, tiles, idx, threads=threads)
        return 256 * len(bs)

    got = measure(
        benchmark,
        run,
        ops=256 * N_BUNDLES,
        nbytes=_bundle_bytes(bundles),
        baseline="test_bundle_verify_baseline",
        note="one call for all bundles: parse, leaf-hash two entries at a time, compare",
    )
    assert got == 256 * N_BUNDLES
    _check_corruption_caught(bundles, threads)


# --- TileAppender ---------------------------------------------------------------------------


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


Leaves = tuple[list[np.ndarray], list[list[bytes]], tuple[int, bytes, int]]


@pytest.fixture(scope="module")
def leaf_batches() -> Leaves:
    rng = np.random.default_rng(11)
    leaves = rng.integers(0, 256, size=(N_LEAVES, 32), dtype=np.uint8)
    batches = [leaves[i : i + APPEND_BATCH] for i in range(0, N_LEAVES, APPEND_BATCH)]
    py_batches = [[bytes(row) for row in b] for b in batches]
    # Expected: size, root, and bytes of tiles written, from the reference appender.
    ref = PyAppender()
    written = sum(len(t[3]) for b in py_batches for t in ref.append(b))
    return batches, py_batches, (ref.size, ref.root(), written)


@pytest.mark.benchmark(group="TileAppender.append, batches of 1000")
def test_tile_appender_baseline(benchmark: Any, leaf_batches: Leaves) -> None:
    _, py_batches, want = leaf_batches

    def run() -> tuple[int, bytes, int]:
        app = PyAppender()
        written = sum(len(t[3]) for b in py_batches for t in app.append(b))
        return app.size, app.root(), written

    assert measure(benchmark, run, ops=N_LEAVES, rounds=1) == want


@pytest.mark.benchmark(group="TileAppender.append, batches of 1000")
def test_tile_appender_native(benchmark: Any, leaf_batches: Leaves) -> None:
    batches, _, want = leaf_batches

    def run() -> tuple[int, bytes, int]:
        app = TileAppender()
        written = sum(len(d) for b in batches for _, d in app.append(b))
        return app.size, app.root(), written

    got = measure(
        benchmark,
        run,
        ops=N_LEAVES,
        baseline="test_tile_appender_baseline",
        note="every touched tile returned as bytes per batch",
    )
    assert got == want


# --- inclusion proofs from tiles ----------------------------------------------------------------

PROOF_SIZE = scaled(70_000_000, 70_000)
N_PROOFS = scaled(2000, 200)


class PyTileProofs:
    """Pure-Python c2sp.org/tlog-tiles: node lookup in tiles, inclusion path, ephemeral fold."""

    def __init__(self, size: int, read: Any) -> None:
        self.size, self.read, self.cache = size, read, {}

    def _tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self.cache:
            full = self.size >> (8 * (level + 1))
            width = 256 if index < full else (self.size >> (8 * level)) % 256
            self.cache[key] = self.read(level, index, width)
        return self.cache[key]

    def node(self, level: int, index: int) -> bytes:
        lt, r = divmod(level, 8)
        start = index << r
        tile = self._tile(lt, start >> 8)
        off = start & 255
        hs = [tile[32 * j : 32 * j + 32] for j in range(off, off + (1 << r))]
        return _py_mth_pow2(hs)

    def _range(self, begin: int, end: int) -> bytes:
        nodes, pos = [], begin
        for lv in range(63, -1, -1):
            if (end - begin) & (1 << lv):
                nodes.append(self.node(lv, pos >> lv))
                pos += 1 << lv
        h = nodes[-1]
        for left in reversed(nodes[:-1]):
            h = hashlib.sha256(b"\x01" + left + h).digest()
        return h

    def inclusion_proof(self, i: int) -> list[bytes]:
        s = self.size
        inner = (i ^ (s - 1)).bit_length()
        proof = [self.node(lv, (i >> lv) ^ 1) for lv in range(inner - 1)]
        if inner > 0:
            proof.append(self._range(((i >> (inner - 1)) ^ 1) << (inner - 1), s))
        x, j = i >> inner, 0
        while x:
            if x & 1:
                proof.append(self.node(inner + j, (i >> (inner + j)) ^ 1))
            x >>= 1
            j += 1
        return proof


Proofs = tuple[dict[tuple[int, int], bytes], list[int], list[list[bytes]]]


@pytest.fixture(scope="module")
def proof_tiles() -> Proofs:
    # Only the tiles the sampled proofs read are materialised, from a synthetic
    # tree whose hashes are derived from their coordinates (tiles are never
    # checked against each other here; both sides read the same bytes).
    rng = random.Random(5)
    indices = [rng.randrange(PROOF_SIZE) for _ in range(N_PROOFS)]
    store: dict[tuple[int, int], bytes] = {}

    def read(level: int, index: int, width: int) -> bytes:
        key = (level, index)
        if key not in store:
            seed = hashlib.sha256(b"%d/%d" % key).digest()
            store[key] = b"".join(hashlib.sha256(seed + bytes([j])).digest() for j in range(256))
        return store[key][: 32 * width]

    ref = PyTileProofs(PROOF_SIZE, read)
    want = [ref.inclusion_proof(i) for i in indices]
    return store, indices, want


def _reader(store: dict[tuple[int, int], bytes]) -> Any:
    def read(level: int, index: int, width: int) -> bytes:
        return store[level, index][: 32 * width]

    return read


@pytest.mark.benchmark(group="inclusion proofs from tiles")
def test_proofs_from_tiles_baseline(benchmark: Any, proof_tiles: Proofs) -> None:
    store, indices, want = proof_tiles

    def run() -> list[list[bytes]]:
        ref = PyTileProofs(PROOF_SIZE, _reader(store))
        return [ref.inclusion_proof(i) for i in indices]

    assert measure(benchmark, run, ops=N_PROOFS, rounds=3) == want


@pytest.mark.benchmark(group="inclusion proofs from tiles")
def test_proofs_from_tiles_native(benchmark: Any, proof_tiles: Proofs) -> None:
    store, indices, want = proof_tiles

    def run() -> list[list[bytes]]:
        builder = ProofBuilder(PROOF_SIZE, _reader(store))
        return [builder.inclusion_proof(i) for i in indices]

    got = measure(
        benchmark,
        run,
        ops=N_PROOFS,
        baseline="test_proofs_from_tiles_baseline",
        note="ProofBuilder, one call per proof, tiles cached per builder on both sides",
    )
    assert got == want


@pytest.mark.benchmark(group="inclusion proofs from tiles")
def test_proofs_from_tiles_batch_native(benchmark: Any, proof_tiles: Proofs) -> None:
    store, indices, want = proof_tiles

    def run() -> tuple[np.ndarray, np.ndarray]:
        return ProofBuilder(PROOF_SIZE, _reader(store)).inclusion_proofs(indices)

    hashes, offsets = measure(
        benchmark,
        run,
        ops=N_PROOFS,
        baseline="test_proofs_from_tiles_baseline",
        note="ProofBuilder.inclusion_proofs: one native call, shared nodes hashed once",
    )
    got = [
        [bytes(h) for h in hashes[int(offsets[k]) : int(offsets[k + 1])]]
        for k in range(len(indices))
    ]
    assert got == want
