"""The server's on-disk layout, keys and index, without HTTP."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.errors import StoreError
from rekorkit.merkle import hash_leaves, root
from rekorkit.server.index import EntryIndex
from rekorkit.server.keys import load_or_create_identity
from rekorkit.server.log import TransparencyLog
from rekorkit.server.storage import TileStore
from rekorkit.tiles import TileID, encode_entry_bundle, entries_path


@given(st.integers(0, 10**12), st.integers(1, 256), st.integers(0, 7))
@settings(max_examples=50, deadline=None)
def test_reads_use_the_tiles_module_paths(index: int, width: int, level: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = TileStore(tmp, fsync=False)
        tile = bytes(range(32)) * width
        store.write_files([(TileID(level, index, width).path, tile)])
        store.write_files([(entries_path(index, width), encode_entry_bundle([b"e"] * width))])
        assert store.read_tile(level, index, width) == tile
        assert store.read_bundle(index, width) == encode_entry_bundle([b"e"] * width)


def test_read_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    store = TileStore(tmp_path, fsync=False, cache_bytes=3 * 8192)
    files = [(TileID(0, i).path, bytes([i]) * 8192) for i in range(10)]
    store.write_files(files)
    for rel, data in files:
        assert store.read(rel) == data
    # Only the three most recent full tiles are kept; an older one is read from disk again.
    os.unlink(tmp_path / files[0][0])
    assert store.read(files[0][0]) is None
    os.unlink(tmp_path / files[9][0])
    assert store.read(files[9][0]) == files[9][1]


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path: Path) -> None:
    store = TileStore(tmp_path)
    store.write_files([("tile/0/000.p/3", b"a" * 96), ("tile/entries/000.p/3", b"b")])
    store.publish_checkpoint(b"cp\n")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert store.read("tile/0/000.p/3") == b"a" * 96
    assert store.read_checkpoint() == b"cp\n"
    assert store.read("tile/0/001") is None


def test_tile_reads_fall_back_to_wider_tiles(tmp_path: Path) -> None:
    store = TileStore(tmp_path)
    full = bytes(range(256)) * 32
    store.write_files([("tile/0/000", full), ("tile/1/000.p/9", b"z" * 9 * 32)])
    assert store.read_tile(0, 0, 5) == full[: 5 * 32]
    assert store.read_tile(1, 0, 4) == b"z" * 4 * 32
    with pytest.raises(StoreError):
        store.read_tile(1, 0, 10)
    with pytest.raises(StoreError):
        store.read_tile(2, 0, 1)
    bundle = encode_entry_bundle([b"one", b"two", b"three"])
    store.write_files([("tile/entries/000.p/3", bundle)])
    assert store.read_bundle(0, 2) == encode_entry_bundle([b"one", b"two"])
    with pytest.raises(StoreError):
        store.read_bundle(0, 4)


def test_remove_beyond_keeps_exactly_the_checkpointed_files(tmp_path: Path) -> None:
    log = TransparencyLog(tmp_path)
    log.integrate([b"%d" % i for i in range(600)])
    kept = _files(tmp_path / "tiles")
    log.integrate([b"x%d" % i for i in range(300)])
    log.close()
    removed = TileStore(tmp_path / "tiles").remove_beyond(600)
    assert "tile/0/002" in removed and "tile/entries/003.p/132" in removed
    assert _files(tmp_path / "tiles") == kept
    assert not (tmp_path / "tiles" / "tile" / "0" / "003.p").exists()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"checkpoint"}


def test_identity_is_created_once_and_checked(tmp_path: Path) -> None:
    a = load_or_create_identity(tmp_path, host="log.example")
    b = load_or_create_identity(tmp_path)
    assert (a.host, a.tree_id, a.v1_log_id, a.v2_log_id) == (
        b.host,
        b.tree_id,
        b.v1_log_id,
        b.v2_log_id,
    )
    assert a.v1_origin == f"log.example - {a.tree_id}" and 0 < a.tree_id < 2**63
    assert len(a.tree_id_hex) == 16
    assert os.stat(tmp_path / "keys" / "checkpoint-ed25519.pem").st_mode & 0o077 == 0
    with pytest.raises(StoreError):
        load_or_create_identity(tmp_path, host="other")
    for bad in ("has space", "plus+sign"):
        with pytest.raises(ValueError):
            load_or_create_identity(
                tmp_path / bad.replace(" ", "_").replace("+", "_") / "x", host=bad
            )


def test_corrupt_tiles_are_detected_on_open(tmp_path: Path) -> None:
    log = TransparencyLog(tmp_path)
    log.integrate([b"%d" % i for i in range(10)])
    log.close()
    tile = tmp_path / "tiles" / "tile" / "0" / "000.p" / "10"
    tile.write_bytes(b"\x00" * 320)
    with pytest.raises(StoreError):
        TransparencyLog(tmp_path)


def test_index_candidates_and_truncate(tmp_path: Path) -> None:
    index = EntryIndex(tmp_path / "i.duckdb")
    hashes = hash_leaves([b"%d" % i for i in range(1000)])
    index.add(0, hashes[:10], 5)
    index.add(10, hashes[10:], np.arange(990))
    cands = index.candidates(hashes[[3, 500]], below=1000)
    assert sorted(i for v in cands.values() for i in v) == [3, 500]
    assert index.candidates(hashes[[500]], below=400) == {}
    assert index.integrated_times([3, 11]) == {3: 5, 11: 1}
    assert index.truncate(600) == 400 and index.count() == 600
    index.close()


def test_integrate_dedups_within_and_across_batches(tmp_path: Path) -> None:
    log = TransparencyLog(tmp_path)
    results, state = log.integrate([b"a", b"b", b"a"])
    assert [(r.index, r.duplicate) for r in results] == [(0, False), (1, False), (0, True)]
    results, state = log.integrate([b"b", b"c"])
    assert [(r.index, r.duplicate) for r in results] == [(1, True), (2, False)]
    assert state.size == 3 and state.root == root(hash_leaves([b"a", b"b", b"c"]))
    assert log.leaf(2) == b"c" and log.find(hash_leaves([b"c", b"zz"])) == [2, None]
    with pytest.raises(ValueError):
        log.integrate([b"ok", b""])
    with pytest.raises(ValueError):
        log.integrate([b"x" * 65536])
    assert log.state.size == 3
    log.close()


def test_index_filter_grows_and_never_hides_an_entry(tmp_path: Path) -> None:
    index = EntryIndex(tmp_path / "f.duckdb")
    hashes = hash_leaves([b"f%d" % i for i in range(100_000)])
    index.add(0, hashes, 1)
    assert index._bits.size * 8 >= 16 * 100_000  # resized as the log grew
    sample = hashes[::997]
    found = index.candidates(sample, below=100_000)
    assert sum(len(v) for v in found.values()) == len(sample)
    absent = hash_leaves([b"absent %d" % i for i in range(2000)])
    assert len(index.candidates(absent, below=100_000)) < 20  # mostly answered in memory
    index.close()
    reopened = EntryIndex(tmp_path / "f.duckdb")  # the filter is rebuilt from the table
    assert sum(len(v) for v in reopened.candidates(sample, below=100_000).values()) == len(sample)
    reopened.close()
