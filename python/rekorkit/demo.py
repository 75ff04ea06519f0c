"""Interim ``make demo``: a 1,000,000-leaf tree through the public Merkle API.

Hashes a million synthetic Rekor-sized entries, computes the root three ways
(one call, all cores; split ranges merged with :class:`CompactRange`), builds
and verifies a batch of inclusion proofs and of consistency proofs, shows that
a tampered proof is caught, and prints the throughput of each step.
Run with ``python -m rekorkit.demo [--leaves N] [--proofs N]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from rekorkit import merkle

T = TypeVar("T")

ENTRY_BYTES = 700  # about the size of a Rekor hashedrekord canonical body


def _timed(label: str, items: int, unit: str, fn: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    print(f"  {label:<44} {dt * 1e3:9.1f} ms  {items / dt / 1e6:9.2f} M {unit}/s")
    return result


def run(leaves: int, proofs: int) -> int:
    """Runs the demo; returns a process exit status (0 when every check held)."""
    print(f"rekorkit Merkle demo: {leaves:,} leaves, {proofs:,} proofs, {os.cpu_count()} cores\n")
    rng = np.random.default_rng(2026)
    buf = rng.integers(0, 256, leaves * ENTRY_BYTES, dtype=np.uint8)
    offsets = np.arange(0, (leaves + 1) * ENTRY_BYTES, ENTRY_BYTES, dtype=np.uint64)

    print("build the tree")
    hashes = _timed(
        f"hash {leaves:,} leaves of {ENTRY_BYTES} B",
        leaves,
        "leaves",
        lambda: merkle.hash_leaves_buffer(buf, offsets),
    )
    root1 = _timed("root, one thread", leaves, "leaves", lambda: merkle.root(hashes, threads=1))
    root_all = _timed("root, all threads", leaves, "leaves", lambda: merkle.root(hashes))

    def split_ranges() -> bytes:
        cut = leaves // 3
        left, right = merkle.CompactRange(0), merkle.CompactRange(cut)
        left.extend(hashes[:cut])
        right.extend(hashes[cut:])
        left.merge(right)
        return left.root()

    root_ranges = _timed("root, two compact ranges merged", leaves, "leaves", split_ranges)
    ok = root1 == root_all == root_ranges
    print(f"  root {root1.hex()}  {'(all three agree)' if ok else 'MISMATCH'}\n")

    print("inclusion proofs")
    indices = rng.integers(0, leaves, proofs, dtype=np.uint64)
    flat, offs = _timed(
        f"build {proofs:,} proofs",
        proofs,
        "proofs",
        lambda: merkle.inclusion_proofs(hashes, indices),
    )
    proved = hashes[indices]
    threads: int | None
    for threads, label in ((1, "one thread"), (None, "all threads")):

        def verify(t: int | None = threads) -> merkle.BatchResult:
            return merkle.verify_inclusion_batch(
                proved, indices, leaves, flat, offs, root1, threads=t
            )

        res = _timed(f"verify {proofs:,} proofs, {label}", proofs, "proofs", verify)
        ok &= res.all_ok
    tampered = flat.copy()
    tampered[int(offs[proofs // 2]), 0] ^= 1
    res = merkle.verify_inclusion_batch(proved, indices, leaves, tampered, offs, root1)
    caught = res.first_failure == proofs // 2 and int(res.ok.sum()) == proofs - 1
    ok &= caught
    print(f"  tampered proof {proofs // 2}: {'caught' if caught else 'MISSED'} ({res.reason})\n")

    print("consistency proofs (each older size -> the full tree)")
    sizes1 = np.sort(rng.integers(1, leaves + 1, proofs, dtype=np.uint64))
    cflat, coffs = _timed(
        f"build {proofs:,} proofs",
        proofs,
        "proofs",
        lambda: merkle.consistency_proofs(hashes, sizes1),
    )

    def old_roots() -> np.ndarray:
        # One pass over the leaves: a compact range grows through every older size.
        out = np.empty((proofs, 32), dtype=np.uint8)
        growing, done = merkle.CompactRange(0), 0
        for k, size in enumerate(sizes1.tolist()):
            growing.extend(hashes[done:size])
            done = size
            out[k] = np.frombuffer(growing.root(), dtype=np.uint8)
        return out

    roots1 = _timed(f"{proofs:,} older roots, one compact range", proofs, "roots", old_roots)
    step = max(1, proofs // 32)
    ok &= all(
        bytes(roots1[k]) == merkle.root(hashes[: int(sizes1[k])]) for k in range(0, proofs, step)
    )
    res = _timed(
        f"verify {proofs:,} proofs",
        proofs,
        "proofs",
        lambda: merkle.verify_consistency_batch(sizes1, leaves, roots1, root1, cflat, coffs),
    )
    ok &= res.all_ok
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m rekorkit.demo", description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=100_000)
    args = parser.parse_args(argv)
    return run(args.leaves, args.proofs)


if __name__ == "__main__":
    raise SystemExit(main())
