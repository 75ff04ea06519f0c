"""Bulk verification (rekorkit.audit.tilelog): entries/s end to end, with and without DuckDB.

The log is synthetic and served in process through ``httpx.MockTransport``:
700-byte entries generated from their index, level-0 tiles hashed on demand,
upper tiles precomputed, an Ed25519-signed checkpoint. The tile reader, the
engine and the store run exactly as against a network log, minus the socket.
One case runs against ``rekorkit serve`` on loopback for the whole stack.

Each case has a pure-Python baseline over the same log in the same run: a
per-entry hashlib loop over the same fetched bundles and tiles, with the
parent-tile and root checks done in Python.

Peak RSS is measured in child processes for two range lengths (memory must
stay flat as the range grows).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import measure, scaled
from rekorkit import tiles
from rekorkit.audit.tilelog import VerifyReport, verify_tile_log
from rekorkit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from rekorkit.client.tilereader import AsyncTileReader
from rekorkit.note import Ed25519Signer, NoteVerifier
from rekorkit.store.duckdb import DuckDBStore

ENTRY = 700
ORIGIN = "bench.rekorkit.example/log"
N = scaled(262_144, 4096)


class SyntheticLog:
    """A tile log of ``n`` entries whose bundles and level-0 tiles are made on request."""

    def __init__(self, n: int, seed: int = 7, *, cache: bool = False):
        self.n = n
        self._cache: dict[str, bytes] | None = {} if cache else None
        rng = np.random.default_rng(seed)
        # One 256-entry template; entry i = template row (i % 256) with i in its first 8 bytes.
        self.template = rng.integers(0, 256, (256, 2 + ENTRY), dtype=np.uint8)
        self.template[:, 0:2] = np.frombuffer(ENTRY.to_bytes(2, "big"), np.uint8)
        self.upper: dict[str, bytes] = {}
        app = tiles.TileAppender()
        for b in range(0, -(-n // 256)):
            for tid, data in app.append(self.leaf_hashes(b)):
                if tid.level > 0 and not tid.is_partial:
                    self.upper["/" + tid.path] = data
        for level, data in app.edge_tiles.items():  # the final partial tiles only
            if level > 0:
                edge = tiles.TileID(level, n // 256 ** (level + 1), len(data) // 32)
                self.upper["/" + edge.path] = data
        self.root = app.root()
        self.signer = Ed25519Signer.generate(ORIGIN)
        self.checkpoint = sign_checkpoint(Checkpoint(ORIGIN, n, self.root), self.signer)

    def width(self, b: int) -> int:
        return min(256, self.n - b * 256)

    def bundle(self, b: int) -> bytes:
        w = self.width(b)
        rows = self.template[:w].copy()
        idx = np.arange(b * 256, b * 256 + w, dtype=">u8").view(np.uint8).reshape(w, 8)
        rows[:, 2:10] = idx
        return rows.tobytes()

    def leaf_hashes(self, b: int) -> np.ndarray:
        return tiles.hash_entry_bundle(self.bundle(b))

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if self._cache is not None:
                hit = self._cache.get(path)
                if hit is None:
                    resp = serve(path)
                    if resp.status_code == 200:
                        self._cache[path] = resp.content
                    return resp
                return httpx.Response(200, content=hit)
            return serve(path)

        def serve(path: str) -> httpx.Response:
            if path == "/checkpoint":
                return httpx.Response(200, content=self.checkpoint)
            if path in self.upper:
                return httpx.Response(200, content=self.upper[path])
            tid, is_entries = tiles.parse_tile_path(path.lstrip("/"))
            if tid.index * 256 >= self.n:
                return httpx.Response(404)
            if is_entries:
                return httpx.Response(200, content=self.bundle(tid.index))
            if tid.level == 0:
                return httpx.Response(200, content=self.leaf_hashes(tid.index).tobytes())
            return httpx.Response(404)

        return httpx.MockTransport(handler)

    @property
    def verifier(self) -> NoteVerifier:
        return self.signer.verifier()


def run_engine(
    log: SyntheticLog,
    store: DuckDBStore | None,
    concurrency: int = 16,
    fetch_level0: bool = True,
) -> VerifyReport:
    async def go() -> VerifyReport:
        async with AsyncTileReader(
            "http://bench", transport=log.transport(), max_concurrency=concurrency
        ) as reader:
            return await verify_tile_log(
                reader,
                log.verifier,
                store=store,
                concurrency=concurrency,
                fetch_level0=fetch_level0,
            )

    return asyncio.run(go())


# -- the pure-Python verifier ------------------------------------------------------


def _py_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _py_node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def _py_mth(hashes: list[bytes]) -> bytes:
    while len(hashes) > 1:
        nxt = [_py_node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
        if len(hashes) % 2:
            nxt.append(hashes[-1])
        hashes = nxt
    return hashes[0]


def py_verify(
    url: str, verifier: NoteVerifier, transport: Any = None, db: Path | None = None
) -> int:
    """A straightforward Python monitor: per-entry hashlib, per-tile MTH, same reads.

    With ``db``, each bundle's verified entries go into DuckDB as one insert of
    Python lists (``executemany`` runs at a few hundred rows/s, too slow to compare).
    """
    con = None
    if db is not None:
        import duckdb

        con = duckdb.connect(str(db))
        con.execute(
            "CREATE TABLE IF NOT EXISTS entries (origin VARCHAR, log_index BIGINT, "
            "leaf_hash BLOB, body BLOB, checkpoint_size BIGINT)"
        )

    async def go() -> int:
        async with AsyncTileReader(url, transport=transport, max_concurrency=16) as reader:
            signed = open_checkpoint(await reader.checkpoint(), verifier)
            size = signed.size
            builder = tiles.AsyncProofBuilder(size, reader.read_tile)
            assert await builder.root() == signed.root
            ids = tiles.level0_tiles(0, size, size)
            parents: dict[int, bytes] = {}
            done = 0
            for k in range(0, len(ids), 32):
                group = ids[k : k + 32]
                got = await reader.tiles(group)
                bundles = await reader.entry_bundles([(t.index, t.width) for t in group])
                for tid, tile, bundle in zip(group, got, bundles, strict=True):
                    pos, hashes, bodies = 0, [], []
                    while pos < len(bundle):
                        n = int.from_bytes(bundle[pos : pos + 2], "big")
                        bodies.append(bundle[pos + 2 : pos + 2 + n])
                        hashes.append(_py_leaf(bodies[-1]))
                        pos += 2 + n
                    want = [tile[i * 32 : i * 32 + 32] for i in range(len(tile) // 32)]
                    assert hashes == want, f"bundle {tid.index}"
                    if tid.width == 256:
                        p = tid.index // 256
                        if p not in parents:
                            full = p < size // 65536
                            w = 256 if full else tiles.partial_width(1, size)
                            parent = await reader.tile(1, p, w)
                            if full:  # a full level-1 tile must hash to its level-2 entry
                                top = await reader.tile(2, 0, tiles.partial_width(2, size))
                                mine = [parent[i * 32 : i * 32 + 32] for i in range(256)]
                                assert _py_mth(mine) == top[p * 32 : p * 32 + 32]
                            parents[p] = parent
                        assert _py_mth(hashes) == parents[p][(tid.index % 256) * 32 :][:32]
                    if con is not None:
                        import pyarrow as pa

                        base = tid.index * 256
                        rows = pa.table(
                            {
                                "origin": [signed.origin] * len(bodies),
                                "log_index": list(range(base, base + len(bodies))),
                                "leaf_hash": hashes,
                                "body": bodies,
                                "checkpoint_size": [size] * len(bodies),
                            }
                        )
                        con.register("rows", rows)
                        con.execute("INSERT INTO entries SELECT * FROM rows")
                        con.unregister("rows")
                    done += len(hashes)
            return done

    try:
        return asyncio.run(go())
    finally:
        if con is not None:
            con.close()


# -- cases -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log() -> SyntheticLog:
    lg = SyntheticLog(N, cache=True)  # the log's own work is not what is measured
    run_engine(lg, None)  # fills the cache
    return lg


def test_verify_tiles_python_baseline(benchmark: Any, log: SyntheticLog) -> None:
    done = measure(
        benchmark,
        lambda: py_verify("http://bench", log.verifier, log.transport()),
        ops=N,
        rounds=1,
        nbytes=N * ENTRY,
        note="pure-Python monitor: hashlib per entry, Python MTH per tile, same reads",
    )
    assert done == N


def test_verify_tiles_no_store(benchmark: Any, log: SyntheticLog) -> None:
    report = measure(
        benchmark,
        lambda: run_engine(log, None),
        ops=N,
        rounds=3,
        nbytes=N * ENTRY,
        baseline="test_verify_tiles_python_baseline",
        note="storage off; in-process transport",
    )
    assert report.entries == N and report.root_hash == log.root


def test_verify_tiles_python_duckdb_baseline(
    benchmark: Any, log: SyntheticLog, tmp_path_factory: Any
) -> None:
    def once() -> int:
        return py_verify(
            "http://bench",
            log.verifier,
            log.transport(),
            tmp_path_factory.mktemp("py") / "p.duckdb",
        )

    done = measure(
        benchmark,
        once,
        ops=N,
        rounds=1,
        nbytes=N * ENTRY,
        note="pure-Python monitor inserting each bundle into DuckDB from Python lists",
    )
    assert done == N


def test_verify_tiles_duckdb(benchmark: Any, log: SyntheticLog, tmp_path_factory: Any) -> None:
    def once() -> tuple[VerifyReport, int]:
        path = tmp_path_factory.mktemp("db") / "bench.duckdb"
        with DuckDBStore(path) as store:
            report = run_engine(log, store)
            return report, store.count(ORIGIN)

    report, stored = measure(
        benchmark,
        once,
        ops=N,
        rounds=3,
        nbytes=N * ENTRY,
        baseline="test_verify_tiles_python_duckdb_baseline",
        note="every entry stored in DuckDB; in-process transport",
    )
    assert report.entries == N and stored == N


def test_verify_tiles_no_store_derived_level0(benchmark: Any, log: SyntheticLog) -> None:
    report = measure(
        benchmark,
        lambda: run_engine(log, None, fetch_level0=False),
        ops=N,
        rounds=3,
        nbytes=N * ENTRY,
        baseline="test_verify_tiles_python_baseline",
        note="storage off, level-0 tiles derived from bundles (half the requests)",
    )
    assert report.entries == N and report.root_hash == log.root


def test_verify_tiles_duckdb_derived_level0(
    benchmark: Any, log: SyntheticLog, tmp_path_factory: Any
) -> None:
    def once() -> VerifyReport:
        path = tmp_path_factory.mktemp("db") / "bench.duckdb"
        with DuckDBStore(path) as store:
            return run_engine(log, store, fetch_level0=False)

    report = measure(
        benchmark,
        once,
        ops=N,
        rounds=3,
        nbytes=N * ENTRY,
        baseline="test_verify_tiles_python_duckdb_baseline",
        note="DuckDB on, level-0 tiles derived from bundles (half the requests)",
    )
    assert report.entries == N and report.stored == N


SERVER_N = scaled(50_000, 2_000)


@pytest.fixture(scope="module")
def served() -> Any:
    from rekorkit.testing import start_server

    with start_server(seed=SERVER_N, subprocess=True, fsync=False, faults=False) as srv:
        yield srv


def test_verify_server_python_baseline(benchmark: Any, served: Any) -> None:
    from rekorkit.note import parse_verifier_key

    v = parse_verifier_key(served.checkpoint_vkey)
    done = measure(
        benchmark,
        lambda: py_verify(served.url, v),
        ops=SERVER_N,
        rounds=1,
        note="pure-Python monitor against rekorkit serve on loopback",
    )
    assert done == SERVER_N


def _run_served(served: Any, store: DuckDBStore | None) -> VerifyReport:
    from rekorkit.note import parse_verifier_key

    v = parse_verifier_key(served.checkpoint_vkey)

    async def go() -> VerifyReport:
        async with AsyncTileReader(served.url, max_concurrency=16) as reader:
            return await verify_tile_log(reader, v, store=store)

    return asyncio.run(go())


def test_verify_server_no_store(benchmark: Any, served: Any) -> None:
    report = measure(
        benchmark,
        lambda: _run_served(served, None),
        ops=SERVER_N,
        rounds=3,
        baseline="test_verify_server_python_baseline",
        note="rekorkit serve on loopback (same 2 cores), storage off",
    )
    assert report.entries == SERVER_N


def test_verify_server_python_duckdb_baseline(
    benchmark: Any, served: Any, tmp_path_factory: Any
) -> None:
    from rekorkit.note import parse_verifier_key

    v = parse_verifier_key(served.checkpoint_vkey)
    done = measure(
        benchmark,
        lambda: py_verify(served.url, v, db=tmp_path_factory.mktemp("pysrv") / "p.duckdb"),
        ops=SERVER_N,
        rounds=1,
        note="pure-Python monitor against rekorkit serve, inserting each bundle into DuckDB",
    )
    assert done == SERVER_N


def test_verify_server_duckdb(benchmark: Any, served: Any, tmp_path_factory: Any) -> None:
    def once() -> VerifyReport:
        with DuckDBStore(tmp_path_factory.mktemp("db") / "srv.duckdb") as store:
            return _run_served(served, store)

    report = measure(
        benchmark,
        once,
        ops=SERVER_N,
        rounds=3,
        baseline="test_verify_server_python_duckdb_baseline",
        note="rekorkit serve on loopback (same 2 cores), DuckDB on",
    )
    assert report.entries == SERVER_N


# -- memory ------------------------------------------------------------------------

_RSS_CHILD = """
import json, sys
sys.path.insert(0, {benches!r})
from bench_verify import SyntheticLog, run_engine

def hwm():
    # VmHWM belongs to this process's own address space; ru_maxrss would also count
    # the parent's memory copied at fork, before exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

log = SyntheticLog({n})
base = hwm()
report = run_engine(log, None)
print(json.dumps({{"entries": report.entries, "before_kib": base, "peak_kib": hwm()}}))
"""


def _rss(n: int) -> dict[str, int]:
    code = _RSS_CHILD.format(benches=str(Path(__file__).parent), n=n)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "REKORKIT_BENCH_QUICK": "1"},
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_verify_peak_rss_is_flat(benchmark: Any) -> None:
    small, large = scaled(1_000_000, 20_000), scaled(4_000_000, 80_000)
    got = measure(
        benchmark,
        lambda: (_rss(small), _rss(large)),
        ops=small + large,
        rounds=1,
        baseline=None,
        note="peak RSS of a verify run, two range lengths",
    )
    a, b = got
    assert a["entries"] == small and b["entries"] == large
    benchmark.extra_info.update(
        {
            "rss_small_entries": small,
            "rss_small_peak_mib": a["peak_kib"] / 1024,
            "rss_large_entries": large,
            "rss_large_peak_mib": b["peak_kib"] / 1024,
        }
    )
    # Flat: 4x the entries may not cost more than a modest constant on top.
    grew = (b["peak_kib"] - b["before_kib"]) - (a["peak_kib"] - a["before_kib"])
    assert grew < 64 * 1024, f"peak RSS grew by {grew} KiB for {large - small} more entries"


# -- Rekor v1 (REST) ---------------------------------------------------------------

V1_N = scaled(3_000, 100)


def _py_inclusion(
    leaf: bytes, index: int, size: int, proof: tuple[bytes, ...], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2 with hashlib, as common Python clients do it."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _py_node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _py_node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def test_verify_v1_python_baseline(benchmark: Any, served: Any) -> None:
    from rekorkit.client.v1 import AsyncRekorV1Client
    from rekorkit.client.verification import VerifyOptions
    from rekorkit.entries import set_payload, verify_set
    from rekorkit.trust import load_public_key

    key = load_public_key(served.public_key_pem)

    def once() -> int:
        async def go() -> int:
            async with AsyncRekorV1Client(served.url, verify=VerifyOptions.none()) as client:
                got = await client.get_entries(list(range(V1_N)))
            for e in got:  # the per-entry loop a Python monitor runs
                leaf = _py_leaf(e.body)
                assert e.uuid == leaf.hex()
                p = e.inclusion_proof
                assert p is not None
                assert _py_inclusion(leaf, p.log_index, p.tree_size, p.hashes, p.root_hash)
                payload = set_payload(
                    base64.b64encode(e.body).decode(),
                    e.integrated_time,
                    e.log_id.hex(),
                    e.log_index,
                )
                verify_set(payload, e.signed_entry_timestamp or b"", key)
            return len(got)

        return asyncio.run(go())

    done = measure(
        benchmark,
        once,
        ops=V1_N,
        rounds=1,
        note="pure-Python v1 monitor: hashlib leaf, Python inclusion loop, SET per entry",
    )
    assert done == V1_N


def test_verify_v1_range(benchmark: Any, served: Any, tmp_path_factory: Any) -> None:
    from rekorkit.audit.v1log import verify_v1_log
    from rekorkit.note import parse_verifier_key

    v = parse_verifier_key(served.v1_vkey)

    def once() -> VerifyReport:
        path = tmp_path_factory.mktemp("db") / "v1.duckdb"
        with DuckDBStore(path) as store:
            return asyncio.run(verify_v1_log(served.url, v, store=store, start=0, end=V1_N))

    report = measure(
        benchmark,
        once,
        ops=V1_N,
        rounds=1,
        baseline="test_verify_v1_python_baseline",
        note="Rekor v1 API of rekorkit serve on loopback, batched proofs + SETs, DuckDB on",
    )
    assert report.entries == V1_N
