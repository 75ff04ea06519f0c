"""Distributed audits (rekorkit.audit.distributed) on a 2-worker Dask LocalCluster.

The baseline here is not pure Python: it is the single-process engine,
:func:`~rekorkit.audit.verify_tile_log`, over the same log in the same run.
The ratio is the cluster's efficiency on one machine (the issue's target: the
cluster run within 20 % of the single-process rate). Both read the same
``rekorkit serve`` subprocess on loopback, which shares the machine's two
cores with them; storage is off so only the audit is compared. The cluster
is started once, outside the timings (a long-lived cluster is how it runs),
and its workers keep their tile readers (and their connections) from one
round to the next, as they do from one task to the next.

Wall time on a shared 2-core machine swings with the other load, so each
case also records ``cpu_s``: the CPU seconds one untimed audit costs every
process taking part (the engine's process, or the coordinator, scheduler and
workers; the log server's apart, as ``server_cpu_s``), which the load does
not change.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import QUICK, measure, scaled
from rekorkit.audit import VerifyReport, verify_tile_log
from rekorkit.audit.distributed import local_cluster, verify_distributed
from rekorkit.client import AsyncTileReader
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server

N = scaled(262_144, 2_048)


@pytest.fixture(scope="module")
def served() -> Iterator[LocalRekor]:
    with start_server(seed=N, subprocess=True, fsync=False, faults=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import Client

    with local_cluster(2) as local, Client(local) as client:  # type: ignore[no-untyped-call]
        yield client


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _record_cpu(
    benchmark: Any, served: LocalRekor, fn: Callable[[], object], client: Any = None
) -> None:
    """One untimed run of ``fn``: CPU seconds of the audit's processes and of the server."""
    import psutil  # type: ignore[import-untyped]  # distributed depends on it

    server = psutil.Process(served.process.pid) if served.process else None

    def others() -> float:
        if client is None:
            return 0.0
        workers = sum(client.run(_cpu).values())
        # A LocalCluster's scheduler runs in this process, already counted.
        elsewhere = client.run_on_scheduler(os.getpid) != os.getpid()
        return float(workers + (client.run_on_scheduler(_cpu) if elsewhere else 0.0))

    def server_cpu() -> float:
        return sum(server.cpu_times()[:2]) if server else 0.0

    before, server_before, others_before = _cpu(), server_cpu(), others()
    fn()
    benchmark.extra_info["cpu_s"] = round(_cpu() - before + others() - others_before, 3)
    benchmark.extra_info["server_cpu_s"] = round(server_cpu() - server_before, 3)


def _single_process(benchmark: Any, served: LocalRekor, *, fetch_level0: bool) -> None:
    vkey = parse_verifier_key(served.checkpoint_vkey)

    async def go() -> VerifyReport:
        async with AsyncTileReader(served.url, max_concurrency=16) as reader:
            return await verify_tile_log(reader, vkey, fetch_level0=fetch_level0)

    report = measure(
        benchmark,
        lambda: asyncio.run(go()),
        ops=N,
        rounds=1 if QUICK else 5,
        note="single-process verify_tile_log against rekorkit serve on loopback"
        + ("" if fetch_level0 else ", bundles only (fetch_level0=False)"),
    )
    assert report.entries == N
    _record_cpu(benchmark, served, lambda: asyncio.run(go()))


def _two_workers(
    benchmark: Any, served: LocalRekor, cluster: Any, *, fetch_level0: bool, baseline: str
) -> None:
    vkey = parse_verifier_key(served.checkpoint_vkey)

    def once() -> VerifyReport:
        # Chunks sized to the cluster: 6 tasks of 43,776 entries or fewer.
        return asyncio.run(verify_distributed(served.url, vkey, cluster, fetch_level0=fetch_level0))

    report = measure(
        benchmark,
        once,
        ops=N,
        rounds=5,
        baseline=baseline,
        note="2-worker LocalCluster (processes, 1 thread each; compact ranges merged to "
        "the signed root), same log" + ("" if fetch_level0 else ", bundles only"),
    )
    assert report.entries == N and report.checkpoint_size == N
    _record_cpu(benchmark, served, once, cluster)


# Each pair runs back to back, so the load in between moves both sides alike.
def test_audit_single_process_baseline(benchmark: Any, served: LocalRekor) -> None:
    _single_process(benchmark, served, fetch_level0=True)


def test_audit_dask_two_workers(benchmark: Any, served: LocalRekor, cluster: Any) -> None:
    _two_workers(
        benchmark, served, cluster, fetch_level0=True, baseline="test_audit_single_process_baseline"
    )


def test_audit_single_process_bundles_only_baseline(benchmark: Any, served: LocalRekor) -> None:
    _single_process(benchmark, served, fetch_level0=False)


def test_audit_dask_two_workers_bundles_only(
    benchmark: Any, served: LocalRekor, cluster: Any
) -> None:
    _two_workers(
        benchmark,
        served,
        cluster,
        fetch_level0=False,
        baseline="test_audit_single_process_bundles_only_baseline",
    )
