"""rekorkit.tiles against the C2SP vectors, the tessera test log, the derived
70,000-entry tile tree, and a small pure-Python reference kept here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit import tiles
from rekorkit.errors import MalformedError, TileError
from rekorkit.tiles import TileID
from vector_files import require_vectors

# --- pure-Python reference (RFC 6962 §2.1) -----------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return ref_node(ref_mth(hashes[:k]), ref_mth(hashes[k:]))


def ref_bundle(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def b64(s: str) -> bytes:
    return base64.b64decode(s)


def checkpoint_root(path: Path) -> tuple[int, bytes]:
    """Size and root from a checkpoint body (lines 2 and 3); signatures are not checked here."""
    lines = path.read_text().split("\n")
    return int(lines[1]), b64(lines[2])


# --- paths ---------------------------------------------------------------------


@cache
def path_vectors() -> dict:  # type: ignore[type-arg]
    p = require_vectors("tile-paths", "tile_path_vectors.json")
    return json.loads(p.read_text())["c2sp_tlog_tiles"]  # type: ignore[no-any-return]


def test_tile_paths_match_vectors() -> None:
    vec = path_vectors()
    for case in vec["paths"]:
        is_entries = case["kind"] == "entries"
        tid = TileID(case.get("level", 0), case["index"], case["width"])
        got = tid.entries_path if is_entries else tid.path
        assert got == case["path"]
        assert tiles.parse_tile_path(case["path"]) == (tid, is_entries)


def test_entries_path_for_index_matches_vectors() -> None:
    for case in path_vectors()["entries_path_for_index"]:
        (tid,) = tiles.level0_tiles(case["seq"], case["seq"] + 1, case["logSize"])
        assert tid.entries_path == case["path"]


def test_every_malformed_vector_path_is_rejected() -> None:
    cases = path_vectors()["parse_must_fail"]
    assert len(cases) == 15
    for case in cases:
        path = f"tile/{case['level']}/{case['index']}"
        with pytest.raises(MalformedError) as info:
            tiles.parse_tile_path(path)
        assert info.value.what == "tile path"
        assert info.value.where


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("tile/00/001", "level"),
        ("tile/0/x000/001", "index group 0"),
        ("tile/0/001.p/0", "width"),
        ("tile/0/001.p/01", "width"),
        ("tile/0/+01", "index group 0"),
        ("tile/0/01", "index group 0"),
        ("/tile/0/000", "prefix"),
        ("tile/0", "index"),
        ("tile/entries/", "index group 0"),
        ("tile/0/x18446744/073/709/551/616", "index group 0"),
        ("tile/0/x018/x446/x744/x073/x709/x551/616", "index"),
    ],
)
def test_non_canonical_paths_are_rejected_with_location(path: str, where: str) -> None:
    with pytest.raises(MalformedError) as info:
        tiles.parse_tile_path(path)
    assert info.value.where == where


def test_largest_index_round_trips() -> None:
    tid = TileID(63, 2**64 - 1, 255)
    assert tiles.parse_tile_path(tid.path) == (tid, False)
    with pytest.raises(ValueError):
        TileID(0, 2**64)
    with pytest.raises(ValueError):
        TileID(64, 0)
    with pytest.raises(ValueError):
        TileID(0, 0, 0)
    with pytest.raises(ValueError):
        TileID(1, 0).entries_path  # noqa: B018


@given(
    level=st.integers(0, 63),
    index=st.integers(0, 2**64 - 1),
    width=st.integers(1, 256),
    entries=st.booleans(),
)
def test_path_format_parse_round_trip(level: int, index: int, width: int, entries: bool) -> None:
    tid = TileID(0 if entries else level, index, width)
    path = tid.entries_path if entries else tid.path
    assert tiles.parse_tile_path(path) == (tid, entries)
    assert path.endswith(f".p/{width}") == (width < 256)


@given(st.text(alphabet="tile/entrsxp.0123456789-", max_size=40))
def test_path_parser_only_raises_malformed(text: str) -> None:
    try:
        tid, entries = tiles.parse_tile_path(text)
    except MalformedError:
        return
    assert (tid.entries_path if entries else tid.path) == text


# --- widths and tile sets ------------------------------------------------------


def test_partial_widths_match_vectors() -> None:
    vec = path_vectors()["partial_widths"]
    for size, rows in ((vec["tree_size"], vec["expect"]), (256, vec["tree_size_256"])):
        for row in rows:
            assert tiles.partial_width(row["level"], size) == row["partial_width"]
            full = [t for t in tiles.edge_tiles_for_size(size) if t.level == row["level"]]
            if row["full_tiles"]:
                assert full[0] == TileID(row["level"], row["full_tiles"] - 1)


def test_tiles_for_size() -> None:
    assert [t.path for t in tiles.tiles_for_size(256)] == ["tile/1/000.p/1"]
    assert tiles.tiles_for_size(0) == []
    assert [t.path for t in tiles.tiles_for_size(70000)] == [
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ]
    assert len(tiles.tiles_for_size(2**64 - 1)) == 8


def test_level0_tiles() -> None:
    assert tiles.level0_tiles(0, 0, 10) == []
    assert tiles.level0_tiles(250, 520, 600) == [
        TileID(0, 0),
        TileID(0, 1),
        TileID(0, 2, 88),
    ]
    with pytest.raises(ValueError):
        tiles.level0_tiles(5, 3, 10)
    with pytest.raises(ValueError):
        tiles.level0_tiles(0, 11, 10)


# --- hash tiles ----------------------------------------------------------------


def test_parse_hash_tile_is_a_zero_copy_view() -> None:
    data = bytes(range(64))
    arr = tiles.parse_hash_tile(data)
    assert arr.shape == (2, 32) and arr.dtype == np.uint8
    assert not arr.flags.owndata and not arr.flags.writeable
    assert bytes(arr[1]) == data[32:]
    buf = bytearray(data)
    view = tiles.parse_hash_tile(buf)
    buf[0] = 0xFF
    assert view[0, 0] == 0xFF  # shares memory with the bytearray


@pytest.mark.parametrize(
    ("size", "width", "message"),
    [
        (31, None, "not a multiple of 32"),
        (0, None, "holds 0 hashes"),
        (257 * 32, None, "holds 257 hashes"),
        (64, 3, "expected 3"),
    ],
)
def test_parse_hash_tile_rejects(size: int, width: int | None, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        tiles.parse_hash_tile(bytes(size), width)


def test_tile_root_and_parent_check() -> None:
    hashes = [ref_leaf(str(i).encode()) for i in range(256)]
    tile = b"".join(hashes)
    assert tiles.tile_root(tile) == ref_mth(hashes)
    assert tiles.tile_root(tile[:96]) == ref_mth(hashes[:3])
    tiles.verify_tile_against_parent(tile, ref_mth(hashes), level=0, index=4)
    with pytest.raises(TileError) as info:
        tiles.verify_tile_against_parent(tile, bytes(32), level=2, index=4)
    assert info.value.evidence["expected"] == bytes(32)
    assert info.value.evidence["actual"] == ref_mth(hashes)
    assert (info.value.evidence["level"], info.value.evidence["index"]) == (2, 4)
    with pytest.raises(TileError, match="only a full tile"):
        tiles.verify_tile_against_parent(tile[:-32], ref_mth(hashes), level=0, index=4)
    with pytest.raises(MalformedError):
        tiles.verify_tile_against_parent(tile, b"short", level=0, index=4)
    with pytest.raises(MalformedError):
        tiles.tile_root(tile[:-1])


# --- entry bundles -------------------------------------------------------------


def test_bundle_spec_example() -> None:
    data = b"\x00\x03one\x00\x03two\x00\x05three"
    assert tiles.parse_entry_bundle(data) == [b"one", b"two", b"three"]
    assert tiles.encode_entry_bundle([b"one", b"two", b"three"]) == data
    hashes = tiles.hash_entry_bundle(memoryview(data))
    assert hashes.shape == (3, 32)
    assert [bytes(h) for h in hashes] == [ref_leaf(e) for e in (b"one", b"two", b"three")]
    assert tiles.parse_entry_bundle(b"") == []
    assert tiles.parse_entry_bundle(b"\x00\x00") == [b""]


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (b"\x00", "byte 0, entry 0", "dangling length byte"),
        (b"\x00\x03one\x00", "byte 5, entry 1", "dangling length byte"),
        (b"\x00\x04one", "byte 0, entry 0", "length 4 runs past the end: 3 bytes remain"),
        (b"\x00\x03one\xff\xff", "byte 5, entry 1", "length 65535 runs past the end: 0 bytes"),
        (b"\x00\x00" * 257, "byte 512, entry 256", "more than 256 entries"),
    ],
)
def test_malformed_bundles_name_offset_and_entry(data: bytes, where: str, reason: str) -> None:
    for parse in (tiles.parse_entry_bundle, tiles.hash_entry_bundle):
        with pytest.raises(MalformedError, match=reason) as info:
            parse(data)
        assert info.value.what == "entry bundle"
        assert info.value.where == where


@given(
    st.lists(st.lists(st.binary(max_size=40), max_size=12), min_size=1, max_size=5),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_entry_columns_match_a_python_split(groups: list[list[bytes]], data: st.DataObject) -> None:
    bundles = [tiles.encode_entry_bundle(g) for g in groups]
    flat = [e for g in groups for e in g]
    skip = data.draw(st.integers(0, len(flat)))
    take = data.draw(st.integers(0, len(flat) - skip))
    buf, offsets = tiles.entry_columns(bundles, skip, take)
    assert offsets.dtype == np.int32 and len(offsets) == take + 1
    got = [buf[offsets[i] : offsets[i + 1]].tobytes() for i in range(take)]
    assert got == flat[skip : skip + take]
    if skip + take < len(flat) or skip + take == 0:
        return
    with pytest.raises(ValueError, match="skipped"):
        tiles.entry_columns(bundles, skip, take + 1)


def test_entry_columns_name_the_bundle_that_does_not_parse() -> None:
    good = tiles.encode_entry_bundle([b"a", b"b"])
    with pytest.raises(MalformedError) as info:
        tiles.entry_columns([good, b"\x00\x05ab"], 0, 3)
    assert info.value.where == "bundle 1 of the group, byte 0, entry 0"


@given(st.lists(st.binary(max_size=30), max_size=20), st.data())
@settings(max_examples=150, deadline=None)
def test_bundle_prefix_len(entries: list[bytes], data: st.DataObject) -> None:
    raw = tiles.encode_entry_bundle(entries)
    count = data.draw(st.integers(0, len(entries)))
    cut = tiles.bundle_prefix_len(raw, count)
    assert tiles.parse_entry_bundle(raw[:cut]) == entries[:count]
    with pytest.raises(MalformedError, match=f"ends after {len(entries)} entries") as info:
        tiles.bundle_prefix_len(raw, len(entries) + 1)
    assert info.value.where == f"byte {len(raw)}, entry {len(entries)}"
    if entries and entries[-1]:
        with pytest.raises(MalformedError, match="runs past the end"):
            tiles.bundle_prefix_len(raw[:-1], len(entries))


def test_encode_limits() -> None:
    with pytest.raises(ValueError, match="entry 1 is 65536 bytes"):
        tiles.encode_entry_bundle([b"", bytes(65536)])
    with pytest.raises(ValueError, match="at most 256"):
        tiles.encode_entry_bundle([b""] * 257)
    assert len(tiles.encode_entry_bundle([bytes(65535)])) == 65537
    with pytest.raises(MalformedError, match="expected bytes"):
        tiles.encode_entry_bundle(["text"])  # type: ignore[list-item]


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_bundle_parser_never_crashes(data: bytes) -> None:
    try:
        entries = tiles.parse_entry_bundle(data)
    except MalformedError as exc:
        assert exc.where and "entry" in exc.where
        with pytest.raises(MalformedError):
            tiles.hash_entry_bundle(data)
        return
    assert tiles.encode_entry_bundle(entries) == data
    assert [bytes(h) for h in tiles.hash_entry_bundle(data)] == [ref_leaf(e) for e in entries]


@given(st.lists(st.binary(max_size=300), max_size=256))
def test_bundle_round_trip(entries: list[bytes]) -> None:
    data = tiles.encode_entry_bundle(entries)
    assert data == ref_bundle(entries)
    assert tiles.parse_entry_bundle(data) == entries


def test_bundle_against_tile_reports_first_mismatch() -> None:
    entries = [f"entry {i}".encode() for i in range(40)]
    bundle = tiles.encode_entry_bundle(entries)
    tile = bytearray(b"".join(ref_leaf(e) for e in entries))
    tiles.verify_bundle_against_tile(bundle, bytes(tile), tile_index=7)
    tile[17 * 32 + 5] ^= 1
    tile[30 * 32] ^= 1
    with pytest.raises(TileError) as info:
        tiles.verify_bundle_against_tile(bundle, bytes(tile), tile_index=7)
    ev = info.value.evidence
    assert (ev["level"], ev["index"], ev["position"]) == (0, 7, 17)
    assert ev["actual"] == ref_leaf(entries[17])
    assert ev["expected"] == bytes(tile[17 * 32 : 18 * 32])
    assert "log index 1809" in str(info.value)


def test_bundle_against_tile_count_and_format_errors() -> None:
    entries = [bytes([i]) * i for i in range(5)]
    bundle = tiles.encode_entry_bundle(entries)
    tile = b"".join(ref_leaf(e) for e in entries)
    with pytest.raises(TileError, match="bundle holds 5 entries but the tile holds 4") as info:
        tiles.verify_bundle_against_tile(bundle, tile[:-32], tile_index=0)
    assert info.value.evidence["position"] == 4
    with pytest.raises(TileError, match="bundle holds 4 entries but the tile holds 5"):
        short = tiles.encode_entry_bundle(entries[:4])
        tiles.verify_bundle_against_tile(short, tile, tile_index=0)
    with pytest.raises(MalformedError, match="not a multiple of 32") as bad_tile:
        tiles.verify_bundle_against_tile(bundle, tile[:-1], tile_index=9)
    assert bad_tile.value.where == "tile 0/9, byte 128"
    with pytest.raises(MalformedError, match="entry 4") as bad_bundle:
        tiles.verify_bundles_against_tiles([bundle, bundle[:-1]], [tile, tile], [8, 9])
    assert bad_bundle.value.where == "bundle 9, byte 14, entry 4"


def test_bundles_against_tiles_batch_names_first_failure() -> None:
    bundles, tile_list = [], []
    for t in range(6):
        entries = [f"{t}:{i}".encode() for i in range(256)]
        bundles.append(tiles.encode_entry_bundle(entries))
        tile_list.append(b"".join(ref_leaf(e) for e in entries))
    tiles.verify_bundles_against_tiles(bundles, tile_list, range(6))
    tile_list[4] = tile_list[4][:32] + bytes(32) + tile_list[4][64:]
    tile_list[5] = tile_list[0]
    with pytest.raises(TileError) as info:
        tiles.verify_bundles_against_tiles(bundles, tile_list, range(6))
    assert (info.value.evidence["index"], info.value.evidence["position"]) == (4, 1)
    with pytest.raises(ValueError, match="must match"):
        tiles.verify_bundles_against_tiles(bundles, tile_list[:2], range(6))


# --- the tessera test log --------------------------------------------------------


def test_tessera_log_bundles_tiles_and_roots() -> None:
    log = require_vectors("tessera-testdata-log")
    size, _ = checkpoint_root(log / "checkpoint")
    assert size == 15
    for n in range(1, 16):
        size, root = checkpoint_root(log / f"checkpoint.{n}")
        assert size == n
        tid = TileID(0, 0, n)
        bundle = (log / tid.entries_path).read_bytes()
        tile = (log / tid.path).read_bytes()
        assert tiles.hash_entry_bundle(bundle).tobytes() == tile
        tiles.verify_bundle_against_tile(bundle, tile, tile_index=0)
        entries = tiles.parse_entry_bundle(bundle)
        assert ref_mth([ref_leaf(e) for e in entries]) == root

        def read(level: int, index: int, width: int) -> bytes:
            return (log / TileID(level, index, width).path).read_bytes()

        assert tiles.root_from_tiles(n, read) == root
    size0, root0 = checkpoint_root(log / "checkpoint.0")
    assert size0 == 0
    assert tiles.root_from_tiles(0, read) == root0 == hashlib.sha256(b"").digest()


def test_tessera_proofs_from_tiles() -> None:
    log = require_vectors("tessera-testdata-log")
    expected = json.loads(require_vectors("derived", "tessera-testdata-proofs.json").read_text())

    def read(level: int, index: int, width: int) -> bytes:
        return (log / TileID(level, index, width).path).read_bytes()

    builders = {n: tiles.ProofBuilder(n, read) for n in range(1, 16)}
    for case in expected["inclusion"]:
        proof = builders[case["treeSize"]].inclusion_proof(case["leafIdx"])
        assert proof == [b64(p) for p in case["proof"]]
    for case in expected["consistency"]:
        proof = builders[case["size2"]].consistency_proof(case["size1"])
        assert proof == [b64(p) for p in case["proof"]]
    # One tile (0/000.p/n) per size; a 1-leaf tree's proofs are empty and read nothing.
    assert [b.fetches for b in builders.values()] == [0] + [1] * 14


# --- derived/tiles-70000 ---------------------------------------------------------


@cache
def tiles70k() -> tuple[Path, dict]:  # type: ignore[type-arg]
    root = require_vectors("derived", "tiles-70000")
    return root, json.loads((root / "expected.json").read_text())


def reader_70k(counter: dict[str, int] | None = None) -> tiles.ReadTile:
    root, _ = tiles70k()

    def read(level: int, index: int, width: int) -> bytes:
        if counter is not None:
            counter[f"{level}/{index}"] = counter.get(f"{level}/{index}", 0) + 1
        return (root / TileID(level, index, width).path).read_bytes()

    return read


def test_70k_edge_tiles_and_roots() -> None:
    root, expected = tiles70k()
    got = [t.path for t in tiles.edge_tiles_for_size(70000)]
    assert got == expected["tiles_expected_for_size_70000"]
    for size in expected["sizes"]:
        want = b64(expected["roots_b64"][str(size)])
        assert checkpoint_root(root / f"checkpoint.{size}") == (size, want)
        assert tiles.root_from_tiles(size, reader_70k()) == want


def test_70k_proofs_rebuilt_from_tiles_fetch_each_tile_once() -> None:
    _, expected = tiles70k()
    counts: dict[str, int] = {}
    builders = {s: tiles.ProofBuilder(s, reader_70k(counts)) for s in expected["sizes"]}
    for case in expected["inclusion"]:
        proof = builders[case["treeSize"]].inclusion_proof(case["leafIdx"])
        assert proof == [b64(p) for p in case["proof"]], case
    for case in expected["consistency"]:
        proof = builders[case["size2"]].consistency_proof(case["size1"])
        assert proof == [b64(p) for p in case["proof"]], (case["size1"], case["size2"])
    assert len(expected["inclusion"]) == 57 and len(expected["consistency"]) == 55
    assert sum(b.fetches for b in builders.values()) == sum(counts.values())
    # The builder caches per size, so any one tile is read at most once per size.
    assert max(counts.values()) <= len(expected["sizes"])


def test_70k_bundles_and_full_tiles_verify() -> None:
    root, _ = tiles70k()
    bundles, level0 = [], []
    for n in range(273):
        tid = TileID(0, n)
        bundles.append((root / tid.entries_path).read_bytes())
        level0.append((root / tid.path).read_bytes())
    tiles.verify_bundles_against_tiles(bundles, level0, range(273))
    partial = TileID(0, 273, 112)
    tiles.verify_bundle_against_tile(
        (root / partial.entries_path).read_bytes(),
        (root / partial.path).read_bytes(),
        tile_index=273,
    )
    level1 = tiles.parse_hash_tile((root / "tile/1/000").read_bytes())
    level1_next = tiles.parse_hash_tile((root / "tile/1/001.p/17").read_bytes())
    parents = np.concatenate([level1, level1_next])
    for n in range(273):
        tiles.verify_tile_against_parent(level0[n], parents[n].tobytes(), level=0, index=n)
    tiles.verify_tiles_against_parents(level0[:256], level1, level=0, first_index=0)
    tiles.verify_tiles_against_parents(level0[256:], level1_next[:17], level=0, first_index=256)
    with pytest.raises(TileError) as info:
        tiles.verify_tiles_against_parents(level0[1:5], level1[:4], level=0, first_index=1)
    assert info.value.evidence["index"] == 1
    assert info.value.evidence["actual"] == level1[1].tobytes()
    with pytest.raises(ValueError, match="4 tiles but 3 parent hashes"):
        tiles.verify_tiles_against_parents(level0[:4], level1[:3], level=0, first_index=0)
    with pytest.raises(MalformedError, match="not a multiple of 32"):
        tiles.verify_tiles_against_parents(level0[:1], b"x" * 33, level=0, first_index=0)
    level2 = (root / "tile/2/000.p/1").read_bytes()
    tiles.verify_tile_against_parent(level1.tobytes(), level2, level=1, index=0)
    with pytest.raises(TileError):
        tiles.verify_tile_against_parent(level0[1], parents[2].tobytes(), level=0, index=1)


def test_proof_builder_accepts_full_tile_for_partial_and_rejects_bad_lengths() -> None:
    root, expected = tiles70k()

    def full_instead(level: int, index: int, width: int) -> bytes:
        return (root / TileID(level, index).path).read_bytes()

    # Size 255: the partial tile 0/000.p/255 is served as the full tile 0/000.
    assert tiles.ProofBuilder(255, full_instead).root() == b64(expected["roots_b64"]["255"])

    def truncated(level: int, index: int, width: int) -> bytes:
        return (root / TileID(level, index, width).path).read_bytes()[:-32]

    with pytest.raises(MalformedError, match=r"tile/0/273\.p/112: read 3552 bytes"):
        tiles.ProofBuilder(70000, truncated).inclusion_proof(69999)
    with pytest.raises(ValueError):
        tiles.ProofBuilder(70000, truncated).inclusion_proof(70000)
    with pytest.raises(ValueError):
        tiles.ProofBuilder(70000, truncated).consistency_proof(0)
    assert tiles.ProofBuilder(70000, truncated).consistency_proof(70000) == []


def test_async_proof_builder_matches_and_fetches_once() -> None:
    _, expected = tiles70k()
    sync_read = reader_70k()
    calls: list[tuple[int, int]] = []

    async def read(level: int, index: int, width: int) -> bytes:
        calls.append((level, index))
        await asyncio.sleep(0)
        return sync_read(level, index, width)

    async def main() -> None:
        builder = tiles.AsyncProofBuilder(70000, read)
        cases = [c for c in expected["inclusion"] if c["treeSize"] == 70000]
        proofs = await asyncio.gather(*(builder.inclusion_proof(c["leafIdx"]) for c in cases))
        for case, proof in zip(cases, proofs, strict=True):
            assert proof == [b64(p) for p in case["proof"]]
        cons = [c for c in expected["consistency"] if c["size2"] == 70000]
        for case in cons:
            assert await builder.consistency_proof(case["size1"]) == [b64(p) for p in case["proof"]]
        assert await builder.root() == b64(expected["roots_b64"]["70000"])
        assert len(calls) == len(set(calls)) == builder.fetches

    asyncio.run(main())


# --- TileAppender ----------------------------------------------------------------


@cache
def leaves_70k() -> np.ndarray:  # type: ignore[type-arg]
    data = b"".join(ref_leaf(str(i).encode()) for i in range(70000))
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, 32)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_appender_random_batches_match_vector_tiles(seed: int) -> None:
    root, expected = tiles70k()
    leaves = leaves_70k()
    rng = random.Random(seed)
    app = tiles.TileAppender()
    written: dict[str, bytes] = {}
    at = 0
    checkpoints = set(expected["sizes"])
    while at < 70000:
        step = rng.choice([1, 2, 3, 100, 255, 256, 257, 1000, 5000])
        end = min(70000, at + step)
        # Stop at every checkpointed size so its partial tiles get written.
        end = min([s for s in checkpoints if at < s <= end] or [end])
        for tid, data in app.append(leaves[at:end]):
            written[tid.path] = data
        at = end
        assert app.size == at
        if at in checkpoints:
            assert app.root() == b64(expected["roots_b64"][str(at)])
            app = tiles.TileAppender(at, app.edge_tiles)  # resume from the edge
    on_disk = {
        str(p.relative_to(root)): p.read_bytes()
        for p in (root / "tile").rglob("*")
        if p.is_file() and "entries" not in p.parts
    }
    assert set(on_disk) <= set(written)
    for path, data in on_disk.items():
        assert written[path] == data, path
    assert app.size == 70000 and app.root() == b64(expected["roots_b64"]["70000"])


def test_appender_root_equals_merkle_root_for_small_sizes() -> None:
    leaves = leaves_70k()[:600]
    app = tiles.TileAppender()
    for n in range(600):
        touched = app.append(leaves[n : n + 1])
        assert touched[0][0] == TileID(0, n // 256, n % 256 + 1 if (n + 1) % 256 else 256)
        if n % 37 == 0 or n in (254, 255, 256, 511, 512):
            assert app.root() == ref_mth([bytes(h) for h in leaves[: n + 1]])
    assert app.append(np.empty((0, 32), dtype=np.uint8)) == []
    assert tiles.TileAppender().root() == hashlib.sha256(b"").digest()


def test_appender_full_tile_touches_parent_levels() -> None:
    app = tiles.TileAppender()
    out = app.append(leaves_70k()[:65536])
    ids = [t for t, _ in out]
    assert ids[0] == TileID(0, 0) and ids[255] == TileID(0, 255)
    assert ids[256:] == [TileID(1, 0), TileID(2, 0, 1)]
    assert app.edge_tiles == {2: out[-1][1]}


def test_appender_rejects_bad_input() -> None:
    app = tiles.TileAppender()
    with pytest.raises(MalformedError, match="dtype"):
        app.append(np.zeros((2, 32), dtype=np.int64))
    with pytest.raises(MalformedError, match="shape"):
        app.append(np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(MalformedError, match="C-contiguous"):
        app.append(np.zeros((2, 64), dtype=np.uint8)[:, ::2])
    with pytest.raises(MalformedError, match="multiple of 32"):
        app.append(b"x" * 33)
    assert app.append(bytes(64))[0][0] == TileID(0, 0, 2)
    with pytest.raises(ValueError, match="level 0, but none was given"):
        tiles.TileAppender(3)
    with pytest.raises(MalformedError, match="level 0"):
        tiles.TileAppender(3, {0: bytes(64)})
    with pytest.raises(ValueError, match="above 7"):
        tiles.TileAppender(3, {0: bytes(96), 9: b""})


# --- properties: tiles from the appender, proofs from the tiles, checked by merkle ----------


class TileStore:
    """The tiles a TileAppender wrote, served the way a tile log serves them."""

    def __init__(self, leaves: np.ndarray) -> None:  # type: ignore[type-arg]
        self.files: dict[tuple[int, int], bytes] = {}
        app = tiles.TileAppender()
        for tid, data in app.append(leaves):
            self.files[tid.level, tid.index] = data
        self.root = app.root()

    def read(self, level: int, index: int, width: int) -> bytes:
        # Only the newest version of each tile is kept; an older (narrower)
        # partial tile is its prefix, as it was when that size was published.
        data = self.files[level, index]
        assert len(data) >= 32 * width
        return data[: 32 * width]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(1, 5000))
def test_proofs_from_tiles_equal_merkle_proofs(data: st.DataObject, size: int) -> None:
    from rekorkit import merkle

    leaves = leaves_70k()[:size]
    store = TileStore(leaves)
    assert store.root == merkle.root(leaves)
    # Proofs for any smaller tree come from the same tiles.
    n = data.draw(st.integers(1, size), label="tree size")
    index = data.draw(st.integers(0, n - 1), label="leaf index")
    old = data.draw(st.integers(1, n), label="old size")
    builder = tiles.ProofBuilder(n, store.read)
    root_n = builder.root()
    assert root_n == merkle.root(leaves[:n])
    proof = builder.inclusion_proof(index)
    assert proof == merkle.inclusion_proof(leaves, index, n)
    merkle.verify_inclusion(bytes(leaves[index]), index, n, proof, root_n)
    cons = builder.consistency_proof(old)
    assert cons == merkle.consistency_proof(leaves, old, n)
    merkle.verify_consistency(old, n, merkle.root(leaves[:old]), root_n, cons)


@given(st.binary(max_size=64 * 32))
def test_buffers_are_read_without_conversion(raw: bytes) -> None:
    raw = raw[: len(raw) - len(raw) % 32] or bytes(32)
    as_array = np.frombuffer(raw, dtype=np.uint8)
    assert tiles.tile_root(raw) == tiles.tile_root(bytearray(raw)) == tiles.tile_root(as_array)
    assert tiles.tile_root(memoryview(raw)) == ref_mth(
        [raw[i : i + 32] for i in range(0, len(raw), 32)]
    )
    with pytest.raises(MalformedError, match="C-contiguous"):
        tiles.tile_root(np.frombuffer(raw * 2, dtype=np.uint8)[::2])


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 70000),
    lengths=st.lists(st.integers(0, 300 * 32), min_size=1, max_size=4),
    index=st.integers(0, 69999),
)
def test_proof_builder_rejects_any_bad_tile_precisely(
    size: int, lengths: list[int], index: int
) -> None:
    served = iter(lengths * 8)

    def read(level: int, tile_index: int, width: int) -> bytes:
        return bytes(next(served, 0))

    builder = tiles.ProofBuilder(size, read)
    try:
        builder.inclusion_proof(index % size)
    except MalformedError as exc:
        assert exc.what == "hash tile" and exc.where
    except ValueError:
        raise AssertionError("a bad tile must raise MalformedError") from None


def test_node_tile_addressing() -> None:
    # c2sp.org/tlog-tiles: node (L, i) -> tile (L div 8, (i << r) >> 8), offset (i << r) & 255, 2^r
    # hashes.
    assert tiles.node_tile(0, 300, 70000) == (TileID(0, 1), 44, 1)
    assert tiles.node_tile(12, 16, 70000) == (TileID(1, 1, 17), 0, 16)
    assert tiles.node_tile(8, 272, 70000) == (TileID(1, 1, 17), 16, 1)
    assert tiles.node_tile(16, 0, 70000) == (TileID(2, 0, 1), 0, 1)
    assert tiles.node_tile(4, 4374, 70000) == (TileID(0, 273, 112), 96, 16)
    with pytest.raises(ValueError, match="not a perfect node"):
        tiles.node_tile(4, 4375, 70000)
    with pytest.raises(ValueError):
        tiles.node_tile(64, 0, 2**64 - 1)


def test_proof_node_lists_evaluate_to_the_vector_proofs() -> None:
    _, expected = tiles70k()
    read = reader_70k()

    def node(level: int, index: int, size: int) -> bytes:
        tid, offset, count = tiles.node_tile(level, index, size)
        tile = read(tid.level, tid.index, tid.width)
        return ref_mth([tile[32 * j : 32 * j + 32] for j in range(offset, offset + count)])

    def evaluate(nodes: list[tuple[int, int]], size: int) -> bytes:
        hashes = [node(lv, ix, size) for lv, ix in nodes]
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = ref_node(left, h)
        return h

    for case in expected["inclusion"][::5]:
        size = case["treeSize"]
        nodes = tiles.inclusion_proof_nodes(case["leafIdx"], size)
        assert [evaluate(n, size) for n in nodes] == [b64(p) for p in case["proof"]]
        want_tiles = {
            (t.level, t.index) for t in tiles.inclusion_proof_tiles(case["leafIdx"], size)
        }
        used = {
            (tid.level, tid.index)
            for n in nodes
            for tid, _, _ in [tiles.node_tile(*x, size) for x in n]
        }
        assert want_tiles == used
    for case in expected["consistency"][::5]:
        size = case["size2"]
        nodes = tiles.consistency_proof_nodes(case["size1"], size)
        assert [evaluate(n, size) for n in nodes] == [b64(p) for p in case["proof"]]
        assert tiles.consistency_proof_tiles(case["size1"], size)
    assert tiles.consistency_proof_nodes(5, 5) == []


def test_batch_inclusion_proofs_match_single_and_verify_in_one_call() -> None:
    from rekorkit import merkle

    _, expected = tiles70k()
    counts: dict[str, int] = {}
    size = 70000
    indices = [0, 1, 255, 256, 65535, 65536, 69999, 12345, 12345]
    builder = tiles.ProofBuilder(size, reader_70k(counts))
    hashes, offsets = builder.inclusion_proofs(indices)
    assert hashes.shape[1] == 32 and offsets.dtype == np.uint64
    assert len(offsets) == len(indices) + 1 and int(offsets[-1]) == len(hashes)
    single = tiles.ProofBuilder(size, reader_70k())
    for k, i in enumerate(indices):
        got = [bytes(h) for h in hashes[int(offsets[k]) : int(offsets[k + 1])]]
        assert got == single.inclusion_proof(i)
    assert max(counts.values()) == 1  # every tile read once for the whole batch
    leaves = leaves_70k()[indices]
    root = b64(expected["roots_b64"]["70000"])
    result = merkle.verify_inclusion_batch(leaves, indices, size, hashes, offsets, root)
    assert result.all_ok
    empty_hashes, empty_offsets = builder.inclusion_proofs([])
    assert empty_hashes.shape == (0, 32) and list(empty_offsets) == [0]
    with pytest.raises(ValueError):
        builder.inclusion_proofs([0, size])

    async def main() -> None:
        sync_read = reader_70k()

        async def read(level: int, index: int, width: int) -> bytes:
            return sync_read(level, index, width)

        ah, ao = await tiles.AsyncProofBuilder(size, read).inclusion_proofs(indices)
        assert ah.tobytes() == hashes.tobytes() and list(ao) == list(offsets)

    asyncio.run(main())
