"""Merkle core benchmarks, each case beside a pure-Python (hashlib) baseline.

Groups: node hashing, leaf hashing of 700-byte entries (bytes/s), roots of
2^20 and 2^24 leaf hashes on one thread and on all threads, batch inclusion
verification at tree size 2^30, single-call inclusion verification, and batch
consistency verification. Baselines defined first in each group run on the
same input; where the full input would take minutes in Python they run on a
leading slice and the ratio compares per-item rates (the note says so).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pure_python as py
import pytest
from conftest import measure, scaled
from rekorkit import merkle

RNG_SEED = 20260601


def _random_hashes(n: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def _rows(arr: np.ndarray) -> list[bytes]:
    return [bytes(r) for r in arr]


# --- node hashing ----------------------------------------------------------------------------

N_NODES = scaled(1 << 18, 1 << 10)
N_NODES_PY = scaled(1 << 16, 1 << 8)


@pytest.fixture(scope="module")
def node_leaves() -> np.ndarray:
    return _random_hashes(N_NODES)


@pytest.mark.benchmark(group="node hashing")
def test_node_hash_baseline(benchmark: Any, node_leaves: np.ndarray) -> None:
    rows = _rows(node_leaves[: 2 * N_NODES_PY])
    pairs = list(zip(rows[0::2], rows[1::2], strict=True))

    def run() -> list[bytes]:
        return [py.node_hash(left, right) for left, right in pairs]

    out = measure(benchmark, run, ops=len(pairs))
    assert out[0] == hashlib.sha256(b"\x01" + rows[0] + rows[1]).digest()


@pytest.mark.benchmark(group="node hashing")
def test_node_hash_native(benchmark: Any, node_leaves: np.ndarray) -> None:
    """Node hashes through a root computation: n - 1 independent-per-level nodes."""
    want = py.root(_rows(node_leaves))
    got = measure(
        benchmark,
        lambda: merkle.root(node_leaves, threads=1),
        ops=N_NODES - 1,
        baseline="test_node_hash_baseline",
        note="one core; nodes of a root computation",
        cpu=True,
    )
    assert got == want


# --- leaf hashing of 700-byte entries --------------------------------------------------------

ENTRY = 700
N_ENTRIES = scaled(1 << 15, 1 << 8)
N_ENTRIES_PY = scaled(1 << 13, 1 << 7)


@pytest.fixture(scope="module")
def entries() -> tuple[list[bytes], bytes, np.ndarray]:
    buf = np.random.default_rng(RNG_SEED).integers(0, 256, N_ENTRIES * ENTRY, dtype=np.uint8)
    raw = buf.tobytes()
    items = [raw[i * ENTRY : (i + 1) * ENTRY] for i in range(N_ENTRIES)]
    offsets = np.arange(0, (N_ENTRIES + 1) * ENTRY, ENTRY, dtype=np.uint64)
    return items, raw, offsets


@pytest.mark.benchmark(group="leaf hashing 700 B")
def test_leaf_hash_baseline(benchmark: Any, entries: tuple[list[bytes], bytes, Any]) -> None:
    items = entries[0][:N_ENTRIES_PY]
    out = measure(
        benchmark,
        lambda: [py.leaf_hash(e) for e in items],
        ops=len(items),
        nbytes=len(items) * ENTRY,
    )
    assert out[0] == hashlib.sha256(b"\x00" + items[0]).digest()


def _check_leaves(got: np.ndarray, items: list[bytes]) -> None:
    assert got.shape == (len(items), 32)
    for i in (0, len(items) // 2, len(items) - 1):
        assert bytes(got[i]) == py.leaf_hash(items[i])


@pytest.mark.benchmark(group="leaf hashing 700 B")
def test_leaf_hash_list_native(benchmark: Any, entries: tuple[list[bytes], bytes, Any]) -> None:
    items = entries[0]
    got = measure(
        benchmark,
        lambda: merkle.hash_leaves(items, threads=1),
        ops=len(items),
        nbytes=len(items) * ENTRY,
        baseline="test_leaf_hash_baseline",
        note="one core; list of bytes",
        cpu=True,
    )
    _check_leaves(got, items)


@pytest.mark.benchmark(group="leaf hashing 700 B")
def test_leaf_hash_buffer_native(benchmark: Any, entries: tuple[list[bytes], bytes, Any]) -> None:
    items, raw, offsets = entries
    got = measure(
        benchmark,
        lambda: merkle.hash_leaves_buffer(raw, offsets, threads=1),
        ops=len(items),
        nbytes=len(raw),
        baseline="test_leaf_hash_baseline",
        note="one core; one buffer + offsets",
        cpu=True,
    )
    _check_leaves(got, items)


@pytest.mark.benchmark(group="leaf hashing 700 B")
def test_leaf_hash_buffer_all_threads(
    benchmark: Any, entries: tuple[list[bytes], bytes, Any]
) -> None:
    items, raw, offsets = entries
    got = measure(
        benchmark,
        lambda: merkle.hash_leaves_buffer(raw, offsets),
        ops=len(items),
        nbytes=len(raw),
        baseline="test_leaf_hash_baseline",
        note="all cores; one buffer + offsets",
    )
    _check_leaves(got, items)


# --- tree roots ------------------------------------------------------------------------------

N_ROOT_20 = scaled(1 << 20, 1 << 12)
N_ROOT_24 = scaled(1 << 24, 1 << 14)
N_ROOT_PY = scaled(1 << 20, 1 << 12)


@pytest.fixture(scope="module")
def leaves_20() -> np.ndarray:
    return _random_hashes(N_ROOT_20, RNG_SEED + 1)


@pytest.mark.benchmark(group="root 2^20")
def test_root_20_baseline(benchmark: Any, leaves_20: np.ndarray) -> None:
    rows = _rows(leaves_20)
    got = measure(benchmark, lambda: py.root(rows), ops=len(rows), rounds=2)
    assert got == merkle.root(leaves_20)


@pytest.mark.benchmark(group="root 2^20")
@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "all-threads"])
def test_root_20_native(benchmark: Any, leaves_20: np.ndarray, threads: int | None) -> None:
    half = len(leaves_20) // 2
    want = merkle.node_hash(merkle.root(leaves_20[:half]), merkle.root(leaves_20[half:]))
    got = measure(
        benchmark,
        lambda: merkle.root(leaves_20, threads=threads),
        ops=len(leaves_20),
        baseline="test_root_20_baseline",
        note=f"{'one core' if threads == 1 else 'all cores'}; leaves per second",
        cpu=threads == 1,
    )
    assert got == want


@pytest.fixture(scope="module")
def leaves_24() -> np.ndarray:
    return _random_hashes(N_ROOT_24, RNG_SEED + 2)


@pytest.mark.benchmark(group="root 2^24")
def test_root_24_baseline(benchmark: Any, leaves_24: np.ndarray) -> None:
    rows = _rows(leaves_24[:N_ROOT_PY])
    got = measure(benchmark, lambda: py.root(rows), ops=len(rows), rounds=1)
    assert got == merkle.root(leaves_24[:N_ROOT_PY])


@pytest.mark.benchmark(group="root 2^24")
@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "all-threads"])
def test_root_24_native(benchmark: Any, leaves_24: np.ndarray, threads: int | None) -> None:
    half = len(leaves_24) // 2
    want = merkle.node_hash(merkle.root(leaves_24[:half]), merkle.root(leaves_24[half:]))
    got = measure(
        benchmark,
        lambda: merkle.root(leaves_24, threads=threads),
        ops=len(leaves_24),
        baseline="test_root_24_baseline",
        rounds=3,
        note=(
            f"{'one core' if threads == 1 else 'all cores'}; "
            f"baseline on the first {N_ROOT_PY} leaves, per-leaf rates"
        ),
        cpu=threads == 1,
    )
    assert got == want


# --- inclusion proofs at tree size 2^30 ------------------------------------------------------

SIZE_30 = 1 << 30
N_PROOFS_PY = scaled(20_000, 500)
REPEAT = scaled(5, 2)


@pytest.fixture(scope="module")
def inclusion_batch() -> dict[str, Any]:
    """Random leaves/indices/proof hashes at size 2^30, roots from the Python chain.

    The batch repeats the Python-checked proofs ``REPEAT`` times so the native
    run is long enough to time well; the baseline checks the first copy.
    """
    rng = np.random.default_rng(RNG_SEED + 3)
    n = N_PROOFS_PY
    leaves = _random_hashes(n, RNG_SEED + 4)
    indices = rng.integers(0, SIZE_30, n, dtype=np.uint64)
    proofs: list[list[bytes]] = []
    for i in indices.tolist():
        inner = (i ^ (SIZE_30 - 1)).bit_length()
        k = inner + bin(i >> inner).count("1")
        proofs.append(_rows(_random_hashes(k, int(i) & 0xFFFF_FFFF)))
    leaf_rows = _rows(leaves)
    roots = [py.inclusion_root(leaf_rows[j], int(indices[j]), SIZE_30, proofs[j]) for j in range(n)]
    flat, offsets = merkle.flatten_proofs(proofs * REPEAT)
    return {
        "leaf_rows": leaf_rows,
        "indices_list": indices.tolist(),
        "proofs": proofs,
        "roots_list": roots,
        "leaves": np.tile(leaves, (REPEAT, 1)),
        "indices": np.tile(indices, REPEAT),
        "flat": flat,
        "offsets": offsets,
        "roots": np.tile(
            np.frombuffer(b"".join(roots), dtype=np.uint8).reshape(-1, 32), (REPEAT, 1)
        ),
    }


@pytest.mark.benchmark(group="inclusion batch 2^30")
def test_inclusion_baseline(benchmark: Any, inclusion_batch: dict[str, Any]) -> None:
    b = inclusion_batch

    def run() -> int:
        ok = 0
        for leaf, index, proof, root in zip(
            b["leaf_rows"], b["indices_list"], b["proofs"], b["roots_list"], strict=True
        ):
            ok += py.inclusion_root(leaf, index, SIZE_30, proof) == root
        return ok

    assert measure(benchmark, run, ops=N_PROOFS_PY, rounds=3) == N_PROOFS_PY


@pytest.mark.benchmark(group="inclusion batch 2^30")
@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "all-threads"])
def test_inclusion_batch_native(
    benchmark: Any, inclusion_batch: dict[str, Any], threads: int | None
) -> None:
    b = inclusion_batch
    n = len(b["indices"])
    res = measure(
        benchmark,
        lambda: merkle.verify_inclusion_batch(
            b["leaves"], b["indices"], SIZE_30, b["flat"], b["offsets"], b["roots"], threads=threads
        ),
        ops=n,
        baseline="test_inclusion_baseline",
        note=f"{'one core' if threads == 1 else 'all cores'}; ~30-hash proofs",
        cpu=threads == 1,
    )
    assert res.all_ok and res.ok.all() and len(res.ok) == n
    bad = b["roots"].copy()
    bad[n // 3, 5] ^= 1
    res = merkle.verify_inclusion_batch(
        b["leaves"], b["indices"], SIZE_30, b["flat"], b["offsets"], bad, threads=threads
    )
    assert res.first_failure == n // 3 and int(res.ok.sum()) == n - 1


@pytest.mark.benchmark(group="inclusion single calls 2^30")
def test_inclusion_single_baseline(benchmark: Any, inclusion_batch: dict[str, Any]) -> None:
    b = inclusion_batch
    k = min(2000, N_PROOFS_PY)
    items = list(zip(b["leaf_rows"], b["indices_list"], b["proofs"], b["roots_list"], strict=True))
    items = items[:k]

    def run() -> int:
        return sum(py.inclusion_root(lf, i, SIZE_30, p) == r for lf, i, p, r in items)

    assert measure(benchmark, run, ops=k) == k


@pytest.mark.benchmark(group="inclusion single calls 2^30")
def test_inclusion_single_native(benchmark: Any, inclusion_batch: dict[str, Any]) -> None:
    """One ``verify_inclusion`` call per proof from a Python loop: the per-call cost."""
    b = inclusion_batch
    k = min(2000, N_PROOFS_PY)
    items = list(zip(b["leaf_rows"], b["indices_list"], b["proofs"], b["roots_list"], strict=True))
    items = items[:k]

    def run() -> int:
        for lf, i, p, r in items:
            merkle.verify_inclusion(lf, i, SIZE_30, p, r)
        return len(items)

    assert (
        measure(
            benchmark,
            run,
            ops=k,
            baseline="test_inclusion_single_baseline",
            note="one call per proof",
        )
        == k
    )


# --- consistency proofs ----------------------------------------------------------------------

N_CONS_PY = scaled(10_000, 300)


@pytest.fixture(scope="module")
def consistency_batch() -> dict[str, Any]:
    """Random proofs between sizes near 2^30, roots derived from them (RFC 9162 §2.1.4.2)."""
    rng = np.random.default_rng(RNG_SEED + 5)
    sizes2 = rng.integers(1 << 29, 1 << 30, N_CONS_PY, dtype=np.uint64)
    sizes1 = []
    proofs, roots1, roots2 = [], [], []
    for j, s2 in enumerate(sizes2.tolist()):
        s1 = int(rng.integers(2, s2))
        if s1 & (s1 - 1) == 0:  # a power of two seeds with the old root itself
            s1 += 1
        k = py.consistency_shape(s1, s2)
        proof = _rows(_random_hashes(k, j))
        r1, r2 = py.consistency_roots(s1, s2, proof)
        sizes1.append(s1)
        proofs.append(proof)
        roots1.append(r1)
        roots2.append(r2)
    flat, offsets = merkle.flatten_proofs(proofs * REPEAT)
    as_arr = lambda rows: np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 32)  # noqa: E731
    return {
        "rows": list(zip(sizes1, sizes2.tolist(), roots1, roots2, proofs, strict=True)),
        "sizes1": np.tile(np.array(sizes1, dtype=np.uint64), REPEAT),
        "sizes2": np.tile(sizes2, REPEAT),
        "roots1": np.tile(as_arr(roots1), (REPEAT, 1)),
        "roots2": np.tile(as_arr(roots2), (REPEAT, 1)),
        "flat": flat,
        "offsets": offsets,
    }


@pytest.mark.benchmark(group="consistency batch 2^30")
def test_consistency_baseline(benchmark: Any, consistency_batch: dict[str, Any]) -> None:
    rows = consistency_batch["rows"]

    def run() -> int:
        return sum(py.verify_consistency(*row) for row in rows)

    assert measure(benchmark, run, ops=len(rows), rounds=3) == len(rows)


@pytest.mark.benchmark(group="consistency batch 2^30")
@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "all-threads"])
def test_consistency_batch_native(
    benchmark: Any, consistency_batch: dict[str, Any], threads: int | None
) -> None:
    c = consistency_batch
    n = len(c["sizes1"])
    res = measure(
        benchmark,
        lambda: merkle.verify_consistency_batch(
            c["sizes1"],
            c["sizes2"],
            c["roots1"],
            c["roots2"],
            c["flat"],
            c["offsets"],
            threads=threads,
        ),
        ops=n,
        baseline="test_consistency_baseline",
        note=f"{'one core' if threads == 1 else 'all cores'}",
        cpu=threads == 1,
    )
    assert res.all_ok and len(res.ok) == n
