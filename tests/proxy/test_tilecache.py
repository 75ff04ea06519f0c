"""FileSystemTileCache: content addressing, supersession, corruption, eviction, crashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rekorkit.errors import MalformedError
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import TileID, encode_entry_bundle


def _tile(width: int, seed: int = 0) -> bytes:
    return b"".join(hashlib.sha256(b"%d-%d" % (seed, i)).digest() for i in range(width))


def _blob(cache_dir: Path, data: bytes) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    return cache_dir / "blobs" / sha[:2] / sha


def test_put_get_by_id_and_path(tmp_path: Path) -> None:
    full = _tile(256)
    with FileSystemTileCache(tmp_path) as cache:
        assert cache.get(TileID(0, 1234)) is None
        cache.put(TileID(0, 1234), full)
        assert cache.get(TileID(0, 1234)) == full
        assert cache.get_path("tile/0/x001/234") == full
        # A narrower request is answered with the prefix (c2sp.org/tlog-tiles).
        assert cache.get_path("tile/0/x001/234.p/5") == full[: 5 * 32]
        assert cache.get(TileID(1, 1234)) is None  # another level, another tile
        assert _blob(tmp_path, full).read_bytes() == full  # named by its SHA-256
    with FileSystemTileCache(tmp_path) as again:  # durable across reopen
        assert again.get(TileID(0, 1234)) == full


def test_partial_superseded_by_wider_and_full(tmp_path: Path) -> None:
    full = _tile(256, seed=7)
    with FileSystemTileCache(tmp_path) as cache:
        cache.put(TileID(2, 3, 10), full[: 10 * 32])
        assert cache.get(TileID(2, 3, 11)) is None  # wider than what is held
        cache.put(TileID(2, 3, 40), full[: 40 * 32])
        cache.put(TileID(2, 3, 20), full[: 20 * 32])  # narrower: ignored
        assert cache.widest(TileID(2, 3)) == 40
        assert not _blob(tmp_path, full[: 10 * 32]).exists()  # the superseded blob is gone
        cache.put(TileID(2, 3), full)
        assert cache.get(TileID(2, 3, 40)) == full[: 40 * 32]
        assert cache.stats().tiles == 1
        assert cache.stats().bytes == len(full)


def test_put_many_keeps_the_widest_of_a_batch_and_indexes_it_once(tmp_path: Path) -> None:
    full = _tile(256, seed=3)
    with FileSystemTileCache(tmp_path) as cache:
        cache.put(TileID(0, 5, 8), full[: 8 * 32])
        batch = [(TileID(0, 5, w), False, full[: w * 32]) for w in (30, 200, 100)]
        batch += [(TileID(0, k), False, _tile(256, seed=k)) for k in range(6, 70)]
        cache.put_many(batch)
        assert cache.widest(TileID(0, 5)) == 200
        assert cache.get(TileID(0, 5, 200)) == full[: 200 * 32]
        assert cache.get(TileID(0, 69)) == _tile(256, seed=69)
        assert cache.stats().tiles == 65
        assert cache.stats().bytes == 200 * 32 + 64 * 256 * 32
        for w in (8, 30, 100):  # neither the superseded nor the narrower staged blobs stay
            assert not _blob(tmp_path, full[: w * 32]).exists()
        assert list((tmp_path / "tmp").iterdir()) == []


def test_bundles_answer_narrower_requests_with_a_prefix(tmp_path: Path) -> None:
    entries = [b"entry %d" % i * (i % 5 + 1) for i in range(256)]
    bundle = encode_entry_bundle(entries)
    with FileSystemTileCache(tmp_path) as cache:
        cache.put(TileID(0, 9), bundle, entries=True)
        assert cache.get(TileID(0, 9), entries=True) == bundle
        assert cache.get_path("tile/entries/009.p/3") == encode_entry_bundle(entries[:3])
        assert cache.get(TileID(0, 9)) is None  # the hash tile is a separate item
        with pytest.raises(ValueError, match="level-0"):
            cache.put(TileID(1, 9), bundle, entries=True)


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with FileSystemTileCache(tmp_path) as cache:
        with pytest.raises(ValueError, match="expected 8192"):
            cache.put(TileID(0, 1), b"x" * 100)
        for path in ["tile/../../etc/passwd", "tile/0/1234", "tile/0/000.p/256", "tile/x/000"]:
            with pytest.raises(MalformedError):
                cache.get_path(path)
        assert cache.stats().tiles == 0


def test_corrupt_or_missing_blob_is_dropped(tmp_path: Path) -> None:
    a, b = _tile(256, 1), _tile(256, 2)
    with FileSystemTileCache(tmp_path) as cache:
        cache.put(TileID(0, 1), a)
        cache.put(TileID(0, 2), b)
        blob = _blob(tmp_path, a)
        blob.write_bytes(a[:-1] + bytes([a[-1] ^ 1]))  # bit rot
        assert cache.get(TileID(0, 1)) is None
        assert not blob.exists()
        assert cache.stats().dropped_corrupt == 1
        _blob(tmp_path, b).unlink()
        assert cache.get(TileID(0, 2)) is None
        assert cache.stats().tiles == 0 and cache.stats().bytes == 0
        cache.put(TileID(0, 1), a)  # refetched and stored again
        assert cache.get(TileID(0, 1)) == a


def test_a_remembered_full_tile_evicted_by_another_instance_is_a_miss(tmp_path: Path) -> None:
    tile_bytes = 256 * 32
    a, b = _tile(256, 1), _tile(256, 2)
    with (
        FileSystemTileCache(tmp_path) as reader,
        FileSystemTileCache(tmp_path, max_bytes=tile_bytes) as writer,
    ):
        reader.put(TileID(0, 1), a)
        assert reader.get(TileID(0, 1)) == a  # read once: its blob name is remembered
        writer.put(TileID(0, 2), b)  # over the bound: the other instance evicts tile 1
        assert reader.get(TileID(0, 1)) is None
        assert reader.get(TileID(0, 2)) == b
        writer.put(TileID(0, 1), a)  # back again (evicting 2): served again, no stale name
        assert reader.get(TileID(0, 1)) == a
        assert reader.get(TileID(0, 2)) is None
        assert reader.stats().tiles == 1


def test_eviction_keeps_the_bound_and_the_pinned_edge(tmp_path: Path) -> None:
    tile_bytes = 256 * 32
    with FileSystemTileCache(tmp_path, max_bytes=10 * tile_bytes) as cache:
        # The right edge of a 70,000-entry tree: level-0 tiles 272 (full) and 273 (partial).
        cache.pin_edge(70_000)
        cache.put(TileID(0, 272), _tile(256, 272))
        cache.put(TileID(0, 273, 112), _tile(112, 273))
        for i in range(40):
            cache.put(TileID(0, i), _tile(256, i))
            assert cache.stats().bytes <= 10 * tile_bytes
        assert cache.get(TileID(0, 35)) is not None  # recently used: kept over older ones
        for i in range(40, 44):
            cache.put(TileID(0, i), _tile(256, i))
        stats = cache.stats()
        assert stats.bytes <= 10 * tile_bytes
        assert stats.evicted > 0
        assert cache.get(TileID(0, 272)) is not None
        assert cache.get(TileID(0, 273, 112)) is not None
        assert cache.get(TileID(0, 35)) is not None
        assert cache.get(TileID(0, 36)) is None  # older than 35 by use
        assert cache.get(TileID(0, 0)) is None
        files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert sum(p.stat().st_size for p in files) == stats.bytes


def test_state_is_saved_atomically(tmp_path: Path) -> None:
    with FileSystemTileCache(tmp_path) as cache:
        assert cache.get_state("checkpoint") is None
        cache.set_state("checkpoint", b"note")
    with FileSystemTileCache(tmp_path) as cache:
        assert cache.get_state("checkpoint") == b"note"


_WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from rekorkit.tilecache import FileSystemTileCache
    from rekorkit.tiles import TileID
    cache = FileSystemTileCache(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        data = b"".join(hashlib.sha256(b"%d-%d" % (i, k)).digest() for k in range(256))
        cache.put(TileID(0, i % 5000), data)
        i += 1
    """
)


def test_kill_9_during_writes_never_serves_a_corrupt_blob(tmp_path: Path) -> None:
    """Writers killed with SIGKILL mid-stream leave only whole, indexed blobs."""
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.4)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with FileSystemTileCache(tmp_path) as cache:
            assert not list((tmp_path / "tmp").iterdir())  # the dead writer's temp files
            stats = cache.stats()
            assert stats.tiles > 0
            for i in range(5000):
                data = cache.get(TileID(0, i))
                if data is not None:
                    assert len(data) == 256 * 32
                    assert hashlib.sha256(data).hexdigest() in {
                        p.name for p in (tmp_path / "blobs").rglob("*")
                    }
            assert cache.stats().dropped_corrupt == 0


_SHARED_WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from rekorkit.tilecache import FileSystemTileCache
    from rekorkit.tiles import TileID
    cache = FileSystemTileCache(sys.argv[1], max_bytes=int(sys.argv[2]), fsync=False)
    for i in range(300):
        k = (i * int(sys.argv[3])) % 300
        data = b"".join(hashlib.sha256(b"%d-%d" % (k, j)).digest() for j in range(256))
        cache.put(TileID(0, k), data)
        cache.get(TileID(0, (k * 7) % 300))
    cache.close()
    """
)


def test_processes_share_one_cache_within_its_bound(tmp_path: Path) -> None:
    bound = 100 * 256 * 32
    procs = [
        subprocess.Popen([sys.executable, "-c", _SHARED_WRITER, str(tmp_path), str(bound), step])
        for step in ("1", "7", "13")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with FileSystemTileCache(tmp_path, max_bytes=bound) as cache:
        stats = cache.stats()
        assert 0 < stats.bytes <= bound
        files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert sum(p.stat().st_size for p in files) == stats.bytes == len(files) * 256 * 32
        held = [cache.get(TileID(0, k)) for k in range(300)]
        assert sum(d is not None for d in held) == stats.tiles == len(files)
        assert cache.stats().dropped_corrupt == 0
