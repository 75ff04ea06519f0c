"""Shared benchmark helpers: quick mode, and recording each case beside its baseline.

Every native case names the pure-Python baseline case it is paired with; the
baseline runs first (it is defined first in its module), so the native case
can record the ratio of the two per-item rates measured in the same run:

* ``ops``: items one call processes (nodes, leaves, proofs);
* ``per_s``: ``ops / median``; ``bytes``: bytes one call hashes, when that is the unit;
* ``baseline``: the name of the paired pure-Python case (absent on baselines,
  which carry ``role: "baseline"``); ``baseline_per_s`` and ``ratio`` when it ran.

``REKORKIT_BENCH_QUICK=1`` (``make test`` runs benches once, timing disabled)
shrinks every input so each module takes a few seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

QUICK = os.environ.get("REKORKIT_BENCH_QUICK") == "1"

# The tests' pure-Python RFC 9162 reference is also a baseline here
# (pure_python imports it): one reference, not a copy per folder. Appended,
# so nothing in tests/ shadows a module of benches/.
_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

T = TypeVar("T")

# Per-item rates of the baselines measured in this session, by case name.
_RATES: dict[str, float] = {}


def scaled(full: int, quick: int) -> int:
    """``full`` normally, ``quick`` under ``REKORKIT_BENCH_QUICK=1``."""
    return quick if QUICK else full


def measure(
    benchmark: Any,
    fn: Callable[[], T],
    *,
    ops: int,
    baseline: str | None = None,
    nbytes: int | None = None,
    rounds: int = 5,
    note: str | None = None,
    cpu: bool = False,
) -> T:
    """Times ``fn`` and records ops, rates and the baseline pairing in ``extra_info``.

    Args:
        benchmark: the pytest-benchmark fixture.
        fn: the call to time; its (last) result is returned for checking.
        ops: items one call processes.
        baseline: name of the paired pure-Python case; ``None`` marks this case as a baseline.
        nbytes: bytes one call hashes, when throughput is counted in bytes.
        rounds: timed rounds (one in quick mode), after one warm-up round.
        note: how the comparison was made, shown in the README table.
        cpu: also time one call in process CPU time (``cpu_per_s``): for one-thread
            cases on a shared machine, where wall time includes waiting for a core.
    """
    result = benchmark.pedantic(
        fn, rounds=1 if QUICK else rounds, iterations=1, warmup_rounds=0 if QUICK else 1
    )
    info = benchmark.extra_info
    info["ops"] = ops
    if nbytes is not None:
        info["bytes"] = nbytes
    if note:
        info["note"] = note
    if baseline is None:
        info["role"] = "baseline"
    else:
        info["baseline"] = baseline
    stats = getattr(benchmark, "stats", None)
    if cpu and stats is not None:
        t0 = time.process_time()
        fn()
        info["cpu_per_s"] = ops / max(time.process_time() - t0, 1e-9)
    if stats is not None:
        rate = ops / stats.stats.median
        info["per_s"] = rate
        if baseline is None:
            _RATES[benchmark.name] = rate
        elif baseline in _RATES:
            info["baseline_per_s"] = _RATES[baseline]
            info["ratio"] = rate / _RATES[baseline]
    return result
