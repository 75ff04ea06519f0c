"""rekorkit.audit.tilelog: bulk verification of tile logs, served by a static loopback server.

The logs are built here with rekorkit.tiles (TileAppender) and signed with a
throwaway Ed25519 key, then broken on purpose: corrupted bundles and tiles,
truncated bundles, bad signatures, forks and rollbacks.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rekorkit import merkle, tiles
from rekorkit.audit.tilelog import RangeError, VerifyReport, verify_tile_log
from rekorkit.checkpoint import Checkpoint, sign_checkpoint
from rekorkit.client.resilience import RetryPolicy
from rekorkit.client.tilereader import AsyncTileReader
from rekorkit.errors import DivergenceError, SignatureError, TileError
from rekorkit.note import Ed25519Signer, parse_verifier_key
from rekorkit.store.duckdb import DuckDBStore
from vector_files import require_vectors

ORIGIN = "example.com/rekorkit-verify-test"


class TileLog:
    """A tlog-tiles log on disk, built with the project's own tile code."""

    def __init__(self, root: Path, signer: Ed25519Signer, origin: str = ORIGIN):
        self.root = root
        self.signer = signer
        self.origin = origin
        self.appender = tiles.TileAppender()
        self.entries: list[bytes] = []
        root.mkdir(parents=True, exist_ok=True)
        self._checkpoint()

    def _write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def append(self, entries: list[bytes]) -> None:
        old = len(self.entries)
        for tid, data in self.appender.append(merkle.hash_leaves(entries)):
            self._write(tid.path, data)
        self.entries.extend(entries)
        size = len(self.entries)
        for n in range(old // 256, (size - 1) // 256 + 1):
            chunk = self.entries[n * 256 : min(size, n * 256 + 256)]
            self._write(tiles.entries_path(n, len(chunk)), tiles.encode_entry_bundle(chunk))
        self._checkpoint()

    def _checkpoint(self) -> None:
        cp = Checkpoint(self.origin, self.appender.size, self.appender.root())
        self._write("checkpoint", sign_checkpoint(cp, self.signer))

    @property
    def vkey(self) -> str:
        return self.signer.verifier().vkey


class StaticServer:
    """Serves a directory on 127.0.0.1 (the directory can be swapped to fake a fork)."""

    def __init__(self, directory: Path):
        self.directory = directory
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per client worker
            wbufsize = 1 << 16  # headers and body in one send, flushed per response
            disable_nagle_algorithm = True

            def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
                super().__init__(*a, directory=str(server.directory), **kw)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def entries(n: int, start: int = 0, tag: bytes = b"entry") -> list[bytes]:
    return [b"%s %d" % (tag, i) for i in range(start, start + n)]


def run(url: str, vkey: str, store: DuckDBStore | None, **kw: object) -> VerifyReport:
    async def go() -> VerifyReport:
        retry = RetryPolicy(max_attempts=2, base_delay=0.01, total_budget=5)
        async with AsyncTileReader(url, retry=retry, max_concurrency=8) as reader:
            return await verify_tile_log(
                reader,
                parse_verifier_key(vkey),
                store=store,
                url=url,
                **kw,  # type: ignore[arg-type]
            )

    return asyncio.run(go())


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate(ORIGIN)


@pytest.fixture
def log(tmp_path: Path, signer: Ed25519Signer) -> TileLog:
    lg = TileLog(tmp_path / "log", signer)
    lg.append(entries(1000))
    return lg


@pytest.fixture
def server(log: TileLog) -> Iterator[StaticServer]:
    srv = StaticServer(log.root)
    yield srv
    srv.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "v.duckdb")
    yield s
    s.close()


def test_verifies_and_stores_every_entry(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    seen: list[int] = []
    report = run(server.url, log.vkey, store, progress=lambda n, b: seen.append(n), concurrency=4)
    assert (report.entries, report.start, report.end, report.checkpoint_size) == (
        1000,
        0,
        1000,
        1000,
    )
    assert report.root_hash == log.appender.root()
    assert report.stored == 1000
    assert report.previous_size is None
    assert sum(seen) == 1000
    assert report.nbytes == sum(len(e) for e in log.entries)
    assert store.count(ORIGIN) == 1000
    e = store.entry(ORIGIN, 777)
    assert e is not None and e.body == b"entry 777" and e.checkpoint_size == 1000
    assert e.leaf_hash == merkle.leaf_hash(b"entry 777")
    cp = store.latest_checkpoint(ORIGIN)
    assert cp is not None and cp.size == 1000 and cp.note == (log.root / "checkpoint").read_bytes()
    assert report.to_json()["entries"] == 1000


def test_second_run_resumes_and_checks_consistency(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    run(server.url, log.vkey, store)
    log.append(entries(700, 1000))
    report = run(server.url, log.vkey, store)
    assert (report.start, report.end, report.entries, report.previous_size) == (
        1000,
        1700,
        700,
        1000,
    )
    assert store.verified_ranges(ORIGIN) == [(0, 1700)]
    again = run(server.url, log.vkey, store)
    assert again.entries == 0 and again.previous_size == 1700


def test_sub_range_with_partial_tiles(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    report = run(server.url, log.vkey, store, start=100, end=600)
    assert report.entries == 500
    assert store.verified_ranges(ORIGIN) == [(100, 600)]
    assert store.entry(ORIGIN, 99) is None
    got = store.entry(ORIGIN, 599)
    assert got is not None and got.body == b"entry 599"
    # an explicit wider range fills only the gaps
    wider = run(server.url, log.vkey, store, start=0, end=1000)
    assert wider.entries == 500
    assert store.verified_ranges(ORIGIN) == [(0, 1000)]


def test_verify_only_stores_nothing(log: TileLog, server: StaticServer) -> None:
    report = run(server.url, log.vkey, None)
    assert report.entries == 1000 and report.stored == 0


def test_range_beyond_checkpoint_is_a_usage_error(log: TileLog, server: StaticServer) -> None:
    with pytest.raises(RangeError):
        run(server.url, log.vkey, None, end=1001)
    with pytest.raises(RangeError):
        run(server.url, log.vkey, None, start=10, end=5)


def test_corrupted_bundle_names_the_entry_and_stores_only_what_verified(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    path = log.root / tiles.entries_path(2)
    data = bytearray(path.read_bytes())
    data[2 + len(b"entry 512") + 2 + 1] ^= 0x01  # inside entry 513
    path.write_bytes(bytes(data))
    with pytest.raises(TileError) as info:
        run(server.url, log.vkey, store, concurrency=2, group_size=1)
    ev = info.value.evidence
    assert ev["level"] == 0 and ev["index"] == 2 and ev["entry_index"] == 513
    assert ev["expected"] == merkle.leaf_hash(b"entry 513")
    assert ev["actual"] != ev["expected"]
    assert store.verified_ranges(ORIGIN) in ([], [(0, 256)], [(0, 512)])
    assert store.entry(ORIGIN, 512) is None


def test_tile_not_matching_its_parent(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    # Rewrite entry 300 and its tile consistently: bundle == tile, but tile != parent.
    forged = list(log.entries[256:512])
    forged[44] = b"forged"
    (log.root / tiles.entries_path(1)).write_bytes(tiles.encode_entry_bundle(forged))
    (log.root / "tile/0/001").write_bytes(merkle.hash_leaves(forged).tobytes())
    with pytest.raises(TileError) as info:
        run(server.url, log.vkey, store)
    assert info.value.evidence["level"] == 0 and info.value.evidence["index"] == 1
    assert store.entry(ORIGIN, 256) is None
    assert all(e <= 256 for _, e in store.verified_ranges(ORIGIN))


def test_truncated_bundle(log: TileLog, server: StaticServer, store: DuckDBStore) -> None:
    path = log.root / tiles.entries_path(0)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(TileError) as info:
        run(server.url, log.vkey, store)
    assert info.value.evidence.get("index") == 0 or "bundle" in str(info.value)
    assert store.count(ORIGIN) == 0


def test_corrupted_edge_tile_fails_the_root(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    edge = log.root / "tile/0/003.p/232"
    data = bytearray(edge.read_bytes())
    data[0] ^= 0xFF
    edge.write_bytes(bytes(data))
    with pytest.raises(TileError, match="checkpoint root"):
        run(server.url, log.vkey, store)
    assert store.count(ORIGIN) == 0 and store.latest_checkpoint(ORIGIN) is None


def test_bad_checkpoint_signature(log: TileLog, server: StaticServer, store: DuckDBStore) -> None:
    other = Ed25519Signer.generate(ORIGIN)
    with pytest.raises(SignatureError):
        run(server.url, other.verifier().vkey, store)
    assert store.count() == 0 and store.latest_checkpoint(ORIGIN) is None


def test_fork_is_detected_against_the_stored_checkpoint(
    tmp_path: Path, log: TileLog, server: StaticServer, store: DuckDBStore, signer: Ed25519Signer
) -> None:
    run(server.url, log.vkey, store)
    fork = TileLog(tmp_path / "fork", signer)
    fork.append(entries(600) + entries(600, 600, tag=b"forged"))  # same key, rewritten history
    server.directory = fork.root
    with pytest.raises(DivergenceError) as info:
        run(server.url, log.vkey, store)
    assert info.value.evidence["old_size"] == 1000 and info.value.evidence["new_size"] == 1200
    assert store.verified_ranges(ORIGIN) == [(0, 1000)]
    assert [c.size for c in store.checkpoints(ORIGIN)] == [1000]


def test_same_size_other_root_and_rollback(
    tmp_path: Path, log: TileLog, server: StaticServer, store: DuckDBStore, signer: Ed25519Signer
) -> None:
    run(server.url, log.vkey, store)
    same = TileLog(tmp_path / "same", signer)
    same.append(entries(1000, tag=b"other"))
    server.directory = same.root
    with pytest.raises(DivergenceError, match="fork"):
        run(server.url, log.vkey, store)
    small = TileLog(tmp_path / "small", signer)
    small.append(entries(10))
    server.directory = small.root
    with pytest.raises(DivergenceError, match="rollback"):
        run(server.url, log.vkey, store)
    assert store.count(ORIGIN) == 1000


def test_tiles_70000_vectors(tmp_path: Path, store: DuckDBStore) -> None:
    """The derived multi-level vector log: level-2 tile, partial tiles at every level."""
    root = require_vectors("derived", "tiles-70000")
    import json

    vkey = json.loads((root / "expected.json").read_text())["vkey"]
    srv = StaticServer(root)
    try:
        report = run(srv.url, vkey, store, concurrency=8)
    finally:
        srv.close()
    assert report.entries == 70000 and report.checkpoint_size == 70000
    origin = report.origin
    e = store.entry(origin, 65537)
    assert e is not None and e.body == b"65537"
    assert store.verified_ranges(origin) == [(0, 70000)]


def test_tessera_testdata_log(store: DuckDBStore) -> None:
    root = require_vectors("tessera-testdata-log")
    vkey = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
    srv = StaticServer(root)
    try:
        report = run(srv.url, vkey, store)
    finally:
        srv.close()
    assert report.entries == 15
    first = store.entry(report.origin, 0)
    assert first is not None and first.body == b"one"


def test_vectors_copy_with_a_corrupted_level1_tile(tmp_path: Path, store: DuckDBStore) -> None:
    """A full level-1 tile that does not hash to its level-2 parent is caught."""
    src = require_vectors("derived", "tiles-70000")
    import json

    vkey = json.loads((src / "expected.json").read_text())["vkey"]
    root = tmp_path / "v"
    shutil.copytree(src, root)
    t = root / "tile/1/000"
    data = bytearray(t.read_bytes())
    data[5 * 32] ^= 1  # the hash of level-0 tile 5
    t.write_bytes(bytes(data))
    srv = StaticServer(root)
    try:
        with pytest.raises(TileError) as info:
            run(srv.url, vkey, store)
    finally:
        srv.close()
    assert info.value.evidence["level"] == 1 and info.value.evidence["index"] == 0
    assert store.count() == 0


def test_derived_level0_tiles_verify_and_still_name_the_entry(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    report = run(server.url, log.vkey, store, fetch_level0=False, end=512)
    assert report.entries == 512 and store.verified_ranges(ORIGIN) == [(0, 512)]
    got = store.entry(ORIGIN, 300)
    assert got is not None and got.leaf_hash == merkle.leaf_hash(b"entry 300")
    path = log.root / tiles.entries_path(2)
    data = bytearray(path.read_bytes())
    data[2 + len(b"entry 512") + 2 + 1] ^= 0x01  # inside entry 513
    path.write_bytes(bytes(data))
    with pytest.raises(TileError) as info:
        run(server.url, log.vkey, store, fetch_level0=False)
    ev = info.value.evidence
    assert ev["index"] == 2 and ev["entry_index"] == 513
    assert ev["expected"] == merkle.leaf_hash(b"entry 513")
    assert store.verified_ranges(ORIGIN) == [(0, 512)]


def test_derived_level0_tile_against_a_forged_pair(
    log: TileLog, server: StaticServer, store: DuckDBStore
) -> None:
    forged = list(log.entries[256:512])
    forged[44] = b"forged"
    (log.root / tiles.entries_path(1)).write_bytes(tiles.encode_entry_bundle(forged))
    (log.root / "tile/0/001").write_bytes(merkle.hash_leaves(forged).tobytes())
    with pytest.raises(TileError) as info:
        run(server.url, log.vkey, store, fetch_level0=False)
    assert info.value.evidence["level"] == 0 and info.value.evidence["index"] == 1
    assert store.entry(ORIGIN, 256) is None
