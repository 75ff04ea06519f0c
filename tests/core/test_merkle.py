"""rekorkit.merkle against the transparency-dev probes, the RFC 6962 reference
tree, the tessera test log, a pure-Python reference, and bad input."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import merkle_reference as ref
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rekorkit import merkle
from rekorkit.errors import ConsistencyError, InclusionError, MalformedError, RekorKitError
from rekorkit.merkle import CompactRange
from vector_files import require_vectors

MERKLE = "transparency-dev-merkle"


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def probes(kind: str) -> list[tuple[str, dict[str, Any]]]:
    root = require_vectors(MERKLE, "testdata", kind)
    files = sorted(root.rglob("*.json"))
    assert files, f"no {kind} probes under {root}"
    return [(str(f.relative_to(root)), json.loads(f.read_text())) for f in files]


def leaves_for(n: int) -> list[bytes]:
    return [ref.leaf(i.to_bytes(4, "big")) for i in range(n)]


def as_array(hashes: list[bytes]) -> np.ndarray:
    return np.frombuffer(bytearray(b"".join(hashes)), dtype=np.uint8).reshape(-1, 32)


# --- transparency-dev/merkle probes -------------------------------------------------------


def test_probe_counts() -> None:
    assert len(probes("inclusion")) == 98
    assert len(probes("consistency")) == 98


def test_inclusion_probes() -> None:
    checked = 0
    for name, p in probes("inclusion"):
        proof = [b64(h) for h in p["proof"] or []]
        args = (b64(p["leafHash"]), p["leafIdx"], p["treeSize"], proof, b64(p["root"]))
        if p["wantErr"]:
            with pytest.raises((InclusionError, MalformedError)):
                merkle.verify_inclusion(*args)
        else:
            merkle.verify_inclusion(*args)
        checked += 1
        # The batch form must agree wherever the input is well-formed.
        hashes = [args[0], args[4], *proof]
        if all(len(h) == 32 for h in hashes):
            flat, offsets = merkle.flatten_proofs([proof])
            res = merkle.verify_inclusion_batch(
                as_array([args[0]]), [args[1]], [args[2]], flat, offsets, args[4]
            )
            assert bool(res.ok[0]) is not p["wantErr"], name
            assert (res.first_failure is None) is not p["wantErr"], name
    assert checked == 98


# Deliberately stricter than transparency-dev, which compares equal-size roots
# as opaque bytes: a root that is not a 32-byte hash never verifies here.
_STRICTER = {"additional/sizes-are-equal-one-and-proof-is-empty.json"}


def test_consistency_probes() -> None:
    for name, p in probes("consistency"):
        proof = [b64(h) for h in p["proof"] or []]
        args = (p["size1"], p["size2"], b64(p["root1"]), b64(p["root2"]), proof)
        if name in _STRICTER:
            assert len(args[2]) != 32 and not p["wantErr"], name
            with pytest.raises(MalformedError, match="32 bytes"):
                merkle.verify_consistency(*args)
        elif p["wantErr"]:
            with pytest.raises((ConsistencyError, MalformedError)):
                merkle.verify_consistency(*args)
        else:
            merkle.verify_consistency(*args)
        hashes = [args[2], args[3], *proof]
        if all(len(h) == 32 for h in hashes) and p["size1"] != p["size2"]:
            flat, offsets = merkle.flatten_proofs([proof])
            res = merkle.verify_consistency_batch(
                [args[0]], [args[1]], as_array([args[2]]), as_array([args[3]]), flat, offsets
            )
            assert bool(res.ok[0]) is not p["wantErr"], name


def test_inclusion_error_carries_evidence() -> None:
    leaves = leaves_for(5)
    root = ref.mth(leaves)
    proof = ref.path(2, leaves)
    with pytest.raises(InclusionError) as info:
        merkle.verify_inclusion(leaves[3], 2, 5, proof, root)
    ev = info.value.evidence
    assert ev["index"] == 2 and ev["size"] == 5 and ev["root"] == root
    assert "root" in ev["reason"]
    with pytest.raises(InclusionError, match="not below the tree size"):
        merkle.verify_inclusion(leaves[0], 5, 5, [], root)


def test_consistency_policy_for_old_size_zero() -> None:
    # RFC 9162 §2.1.4: proofs from size 0 are rejected here, even 0 -> 0.
    root = ref.mth(leaves_for(3))
    with pytest.raises(ConsistencyError, match="old size 0"):
        merkle.verify_consistency(0, 3, merkle.EMPTY_ROOT, root, [])
    with pytest.raises(ConsistencyError):
        merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    with pytest.raises(ConsistencyError, match="smaller"):
        merkle.verify_consistency(3, 2, root, root, [])
    merkle.verify_consistency(3, 3, root, root, [])
    with pytest.raises(ConsistencyError, match="empty proof"):
        merkle.verify_consistency(3, 3, root, root, [root])


# --- RFC 6962 reference tree ----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_tree() -> dict[str, Any]:
    path = require_vectors(MERKLE, "reference_tree_8_leaves.json")
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def test_reference_tree_hashes(reference_tree: dict[str, Any]) -> None:
    inputs = [bytes.fromhex(h) for h in reference_tree["leafInputsHex"]]
    leaf_hashes = merkle.hash_leaves(inputs)
    got = [bytes(row).hex() for row in leaf_hashes]
    assert got == reference_tree["nodeHashesByLevel"][0]
    assert [merkle.leaf_hash(d).hex() for d in inputs] == got
    for level, row in enumerate(reference_tree["nodeHashesByLevel"][1:], start=1):
        prev = reference_tree["nodeHashesByLevel"][level - 1]
        for i, want in enumerate(row):
            left, right = bytes.fromhex(prev[2 * i]), bytes.fromhex(prev[2 * i + 1])
            assert merkle.node_hash(left, right).hex() == want
    for size, want in enumerate(reference_tree["rootsBySize"]):
        assert merkle.root(leaf_hashes[:size]).hex() == want, size
    assert merkle.EMPTY_ROOT.hex() == reference_tree["rootsBySize"][0]


def test_reference_tree_hasher_vectors(reference_tree: dict[str, Any]) -> None:
    for v in reference_tree["hasher_vectors"]:
        if "leafInputHex" in v:
            assert merkle.leaf_hash(bytes.fromhex(v["leafInputHex"])).hex() == v["want"]
        elif "leftHex" in v:
            got = merkle.node_hash(bytes.fromhex(v["leftHex"]), bytes.fromhex(v["rightHex"]))
            assert got.hex() == v["want"]
        else:
            assert merkle.EMPTY_ROOT.hex() == v["want"]


def test_reference_tree_proofs(reference_tree: dict[str, Any]) -> None:
    leaf_hashes = merkle.hash_leaves([bytes.fromhex(h) for h in reference_tree["leafInputsHex"]])
    roots = [bytes.fromhex(r) for r in reference_tree["rootsBySize"]]
    for case in reference_tree["derived_all_inclusion_proofs"]:
        i, n = case["leafIdx"], case["treeSize"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert merkle.inclusion_proof(leaf_hashes, i, n) == want
        merkle.verify_inclusion(bytes(leaf_hashes[i]), i, n, want, roots[n])
    for case in reference_tree["derived_all_consistency_proofs"]:
        m, n = case["size1"], case["size2"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert merkle.consistency_proof(leaf_hashes, m, n) == want
        merkle.verify_consistency(m, n, roots[m], roots[n], want)
    for case in reference_tree["inclusion_from_upstream_table"]:
        proof = [bytes.fromhex(h) for h in case["proof"]]
        merkle.verify_inclusion(
            bytes.fromhex(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            proof,
            bytes.fromhex(case["root"]),
        )
    for case in reference_tree["consistency_from_upstream_table"]:
        proof = [bytes.fromhex(h) for h in case["proof"]]
        r1, r2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
        merkle.verify_consistency(case["size1"], case["size2"], r1, r2, proof)


# --- tessera test log and the derived 70,000-entry log --------------------------------------


def test_tessera_testdata_roots_and_proofs() -> None:
    data = json.loads(require_vectors("derived", "tessera-testdata-proofs.json").read_text())
    entries = [b64(e) for e in data["entries_b64"]]
    leaf_hashes = merkle.hash_leaves(entries)
    for size, want in data["roots_b64"].items():
        assert merkle.root(leaf_hashes[: int(size)]) == b64(want), size
    assert len(data["inclusion"]) == 120 and len(data["consistency"]) == 105
    for case in data["inclusion"]:
        i, n = case["leafIdx"], case["treeSize"]
        proof = [b64(h) for h in case["proof"]]
        assert bytes(leaf_hashes[i]) == b64(case["leafHash"])
        assert merkle.inclusion_proof(leaf_hashes, i, n) == proof
        merkle.verify_inclusion(b64(case["leafHash"]), i, n, proof, b64(case["root"]))
    for case in data["consistency"]:
        m, n = case["size1"], case["size2"]
        proof = [b64(h) for h in case["proof"]]
        assert merkle.consistency_proof(leaf_hashes, m, n) == proof
        merkle.verify_consistency(m, n, b64(case["root1"]), b64(case["root2"]), proof)


def test_tiles_70000_roots_and_proofs_from_leaves() -> None:
    data = json.loads(require_vectors("derived", "tiles-70000", "expected.json").read_text())
    leaf_hashes = merkle.hash_leaves([str(i).encode() for i in range(70000)])
    for size in data["sizes"]:
        assert merkle.root(leaf_hashes[:size]) == b64(data["roots_b64"][str(size)]), size
    inc = data["inclusion"]
    flat, offsets = merkle.flatten_proofs([[b64(h) for h in c["proof"]] for c in inc])
    res = merkle.verify_inclusion_batch(
        as_array([b64(c["leafHash"]) for c in inc]),
        [c["leafIdx"] for c in inc],
        [c["treeSize"] for c in inc],
        flat,
        offsets,
        as_array([b64(c["root"]) for c in inc]),
    )
    assert res.all_ok and res.ok.all() and len(res.ok) == len(inc)
    for c in inc[:: max(1, len(inc) // 10)]:
        want = [b64(h) for h in c["proof"]]
        assert merkle.inclusion_proof(leaf_hashes, c["leafIdx"], c["treeSize"]) == want
    con = data["consistency"]
    flat, offsets = merkle.flatten_proofs([[b64(h) for h in c["proof"]] for c in con])
    res = merkle.verify_consistency_batch(
        [c["size1"] for c in con],
        [c["size2"] for c in con],
        as_array([b64(c["root1"]) for c in con]),
        as_array([b64(c["root2"]) for c in con]),
        flat,
        offsets,
    )
    assert res.all_ok and len(res.ok) == len(con)


# --- roots, compact ranges, batch hashing ---------------------------------------------------


def test_root_matches_reference_across_sizes_and_threads() -> None:
    leaves = leaves_for(1100)
    arr = as_array(leaves)
    for n in [*range(0, 70), 255, 256, 257, 1023, 1024, 1025, 1100]:
        want = ref.mth(leaves[:n])
        assert merkle.root(arr[:n]) == want
        assert merkle.root(b"".join(leaves[:n])) == want
        assert merkle.root(leaves[:n]) == want


def test_parallel_root_equals_single_thread() -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (100_003, 32), dtype=np.uint8)
    one = merkle.root(arr, threads=1)
    assert merkle.root(arr, threads=2) == one
    assert merkle.root(arr) == one
    r = CompactRange()
    r.extend(arr)
    assert r.root() == one


def test_compact_range_append_extend_merge() -> None:
    leaves = leaves_for(300)
    arr = as_array(leaves)
    whole = CompactRange()
    for i, h in enumerate(leaves):
        whole.append(h)
        if i % 37 == 0:
            assert whole.root() == ref.mth(leaves[: i + 1])
    assert (whole.begin, whole.end) == (0, 300)
    assert len(whole.hashes) == bin(300).count("1")
    for cut in (0, 1, 5, 128, 199, 300):
        left = CompactRange(0)
        left.extend(arr[:cut])
        right = CompactRange(cut)
        right.extend(arr[cut:])
        left.merge(right)
        assert left == whole and left.root() == whole.root()
    restored = CompactRange(0, whole.hashes, end=300)
    assert restored.root() == ref.mth(leaves)
    copy = restored.copy()
    copy.append(leaves[0])
    assert copy.end == 301 and restored.end == 300
    assert CompactRange().root() == merkle.EMPTY_ROOT


def test_compact_range_bad_input() -> None:
    r = CompactRange(5)
    r.extend(as_array(leaves_for(3)))
    with pytest.raises(ValueError, match="starting at 0"):
        r.root()
    with pytest.raises(ValueError, match="not adjacent"):
        r.merge(CompactRange(9))
    with pytest.raises(MalformedError, match="needs 2 node hashes"):
        CompactRange(0, leaves_for(1), end=3)
    with pytest.raises(MalformedError, match="end"):
        CompactRange(0, leaves_for(1))
    with pytest.raises(MalformedError, match="32 bytes"):
        r.append(b"short")


def test_hash_leaves_forms_agree() -> None:
    entries = [bytes([i % 256]) * (i % 900) for i in range(2000)]
    want = as_array([ref.leaf(e) for e in entries])
    assert np.array_equal(merkle.hash_leaves(entries), want)
    assert np.array_equal(merkle.hash_leaves(entries, threads=1), want)
    buf = b"".join(entries)
    offsets = np.cumsum([0] + [len(e) for e in entries])
    got = merkle.hash_leaves_buffer(buf, offsets)
    assert got.shape == (2000, 32) and got.dtype == np.uint8 and got.flags.c_contiguous
    assert np.array_equal(got, want)
    assert np.array_equal(merkle.hash_leaves_buffer(bytearray(buf), offsets, threads=2), want)
    view = np.frombuffer(buf, dtype=np.uint8)
    assert np.array_equal(merkle.hash_leaves_buffer(view, offsets.astype(np.uint64)), want)
    assert merkle.hash_leaves([]).shape == (0, 32)


def test_batch_inclusion_matches_single_and_reports_first_failure() -> None:
    leaves = leaves_for(3001)
    arr = as_array(leaves)
    size = 3001
    root = ref.mth(leaves)
    indices = list(range(0, size, 1))
    proofs = [merkle.inclusion_proof(arr, i, size) for i in indices]
    flat, offsets = merkle.flatten_proofs(proofs)
    res = merkle.verify_inclusion_batch(arr, indices, size, flat, offsets, root)
    assert res.all_ok and res.ok.dtype == np.bool_ and res.ok.shape == (size,)
    bad_leaves = arr.copy()
    bad_leaves[2500, 7] ^= 4
    bad_leaves[2999, 0] ^= 1
    bad_indices = np.array(indices, dtype=np.int64)
    bad_indices[1777] = size  # index beyond the size
    for threads in (1, 2, None):
        res = merkle.verify_inclusion_batch(
            bad_leaves, bad_indices, [size], flat, offsets, root, threads=threads
        )
        assert np.flatnonzero(~res.ok).tolist() == [1777, 2500, 2999]
        assert res.first_failure == 1777 and res.reason is not None
        assert "not below the tree size" in res.reason


def test_hash_array_rows_are_accepted_as_single_hashes() -> None:
    arr = as_array(leaves_for(6))
    root = merkle.root(arr)
    root_row = np.frombuffer(root, dtype=np.uint8)
    proof = merkle.inclusion_proof(arr, 4)
    merkle.verify_inclusion(arr[4], 4, 6, proof, root_row)
    flat, offsets = merkle.flatten_proofs([proof])
    assert merkle.verify_inclusion_batch(arr[4:5], [4], 6, flat, offsets, root_row).all_ok
    assert merkle.node_hash(arr[0], arr[1]) == ref.node(bytes(arr[0]), bytes(arr[1]))
    with pytest.raises(MalformedError, match="expected bytes"):
        merkle.verify_inclusion(arr[4].astype(np.int16), 4, 6, proof, root)


def test_batch_consistency_against_one_new_head() -> None:
    leaves = leaves_for(200)
    arr = as_array(leaves)
    sizes1 = list(range(1, 201))
    proofs = [merkle.consistency_proof(arr, m, 200) for m in sizes1]
    flat, offsets = merkle.flatten_proofs(proofs)
    roots1 = as_array([ref.mth(leaves[:m]) for m in sizes1])
    root2 = ref.mth(leaves)
    res = merkle.verify_consistency_batch(sizes1, 200, roots1, root2, flat, offsets)
    assert res.all_ok and res.ok.all()
    roots1[50, 0] ^= 1
    res = merkle.verify_consistency_batch(sizes1, [200], roots1, root2, flat, offsets, threads=1)
    assert res.first_failure == 50 and res.ok.sum() == 199
    assert res.reason == "proof does not rebuild the old root"


def test_many_proofs_at_once_equal_single_builds() -> None:
    leaves = leaves_for(1500)
    arr = as_array(leaves)
    indices = [0, 1, 2, 255, 256, 1023, 1024, 1498, 1499, 700]
    for size in (1500, 1025, 3):
        idx = [i for i in indices if i < size]
        flat, offsets = merkle.inclusion_proofs(arr, idx, size)
        assert offsets.dtype == np.uint64 and len(offsets) == len(idx) + 1
        for k, i in enumerate(idx):
            got = [bytes(h) for h in flat[offsets[k] : offsets[k + 1]]]
            assert got == ref.path(i, leaves[:size])
        res = merkle.verify_inclusion_batch(
            arr[idx], idx, size, flat, offsets, ref.mth(leaves[:size]), threads=1
        )
        assert res.all_ok
    sizes1 = [1, 2, 3, 4, 5, 500, 1024, 1499, 1500]
    flat, offsets = merkle.consistency_proofs(arr, sizes1)
    for k, m in enumerate(sizes1):
        got = [bytes(h) for h in flat[offsets[k] : offsets[k + 1]]]
        assert got == ref.consistency(m, leaves)
    with pytest.raises(ValueError, match="not below"):
        merkle.inclusion_proofs(arr, [1500])
    with pytest.raises(ValueError, match="0 < size1"):
        merkle.consistency_proofs(arr, [0], 1500)
    with pytest.raises(ValueError, match="exceeds"):
        merkle.consistency_proofs(arr, [1], 1501)


# --- bad input at the boundary ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros((4, 32), dtype=np.uint16), "dtype uint8"),
        (np.zeros((4, 32), dtype=np.float64), "dtype uint8"),
        (np.zeros((4, 31), dtype=np.uint8), r"shape \(n, 32\)"),
        (np.zeros(64, dtype=np.uint8), r"shape \(n, 32\)"),
        (np.zeros((2, 2, 32), dtype=np.uint8), r"shape \(n, 32\)"),
        (np.zeros((8, 32), dtype=np.uint8)[::2], "C-contiguous"),
        (np.zeros((32, 4), dtype=np.uint8).T, r"shape|C-contiguous"),
        (np.asfortranarray(np.zeros((4, 32), dtype=np.uint8)), "C-contiguous"),
        (b"\x00" * 33, "not a multiple of 32"),
        (bytearray(33), "not a multiple of 32"),
        ([b"\x00" * 32, b"\x00" * 31], "index 1"),
        ([b"\x00" * 32, "text"], "index 1"),
        ("a string", "expected"),
        (12, "expected"),
    ],
)
def test_root_rejects_bad_hash_lists(value: object, match: str) -> None:
    with pytest.raises(MalformedError, match=match) as info:
        merkle.root(value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_bad_scalars_and_arguments() -> None:
    good = b"\x00" * 32
    assert merkle.node_hash(good, good[:31]) == ref.node(good, good[:31])
    with pytest.raises(MalformedError, match="expected bytes"):
        merkle.node_hash(good, 5)  # type: ignore[arg-type]
    with pytest.raises(MalformedError):
        merkle.leaf_hash("text")  # type: ignore[arg-type]
    assert merkle.leaf_hash(bytearray(b"abc")) == ref.leaf(b"abc")
    with pytest.raises(ValueError, match="threads"):
        merkle.root(np.zeros((100_000, 32), dtype=np.uint8), threads=0)
    with pytest.raises(ValueError, match="not below the tree size"):
        merkle.inclusion_proof(as_array(leaves_for(4)), 4)
    with pytest.raises(ValueError, match="exceeds"):
        merkle.inclusion_proof(as_array(leaves_for(4)), 1, 5)
    with pytest.raises(ValueError, match="0 < size1"):
        merkle.consistency_proof(as_array(leaves_for(4)), 0, 4)
    with pytest.raises(InclusionError):
        merkle.verify_inclusion(good, -1, 4, [], good)
    with pytest.raises(InclusionError):
        merkle.verify_inclusion(good, 0, 2**64, [], good)


def test_batch_rejects_inconsistent_arrays() -> None:
    arr = as_array(leaves_for(4))
    flat, offsets = merkle.flatten_proofs([[], [], [], []])
    root = ref.mth(leaves_for(4))
    with pytest.raises(MalformedError, match="indices"):
        merkle.verify_inclusion_batch(arr, [0, 1], 4, flat, offsets, root)
    with pytest.raises(MalformedError, match="roots"):
        merkle.verify_inclusion_batch(arr, [0, 1, 2, 3], 4, flat, offsets, arr[:2])
    with pytest.raises(MalformedError, match="proof offsets"):
        merkle.verify_inclusion_batch(arr, [0, 1, 2, 3], 4, flat, [0, 0, 0], root)
    with pytest.raises(MalformedError, match="index 2"):
        merkle.verify_inclusion_batch(arr, [0, 1, 2, 3], 4, arr, [0, 2, 1, 3, 4], root)
    with pytest.raises(MalformedError, match="negative"):
        merkle.verify_inclusion_batch(arr, [0, -1, 2, 3], 4, flat, offsets, root)
    with pytest.raises(MalformedError, match="integers"):
        merkle.verify_inclusion_batch(arr, [0.5, 1, 2, 3], 4, flat, offsets, root)
    with pytest.raises(MalformedError, match="entry offsets"):
        merkle.hash_leaves_buffer(b"abcdef", [0, 4, 2])
    with pytest.raises(MalformedError, match="past the end"):
        merkle.hash_leaves_buffer(b"abcdef", [0, 7])
    with pytest.raises(MalformedError, match="index 1"):
        merkle.hash_leaves([b"a", "b"])  # type: ignore[list-item]
    with pytest.raises(MalformedError, match="32 bytes"):
        merkle.flatten_proofs([[b"short"]])


def test_batch_work_releases_the_gil() -> None:
    """Python threads keep running while the core hashes (the GIL is released)."""
    arr = np.random.default_rng(5).integers(0, 256, (1 << 20, 32), dtype=np.uint8)
    span: list[float] = []

    def work() -> None:
        span.append(time.perf_counter())
        merkle.root(arr, threads=1)
        span.append(time.perf_counter())

    worker = threading.Thread(target=work)
    ticks: list[float] = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    start, end = span
    assert end - start > 0.02, "root of 2^20 leaves finished too fast to observe"
    inside = [t for t in ticks if start + 0.005 < t < end - 0.005]
    assert len(inside) > 100


def test_errors_share_the_tree() -> None:
    with pytest.raises(RekorKitError):
        merkle.root(b"\x00")


# --- properties against the pure-Python reference ------------------------------------------

sizes = st.integers(min_value=1, max_value=140)


@settings(max_examples=150, deadline=None)
@given(size=sizes, data=st.data())
def test_built_inclusion_proofs_verify_and_match_reference(size: int, data: st.DataObject) -> None:
    leaves = leaves_for(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(as_array(leaves), index, size)
    assert proof == ref.path(index, leaves)
    root = ref.mth(leaves)
    merkle.verify_inclusion(leaves[index], index, size, proof, root)
    assert ref.verify_inclusion(leaves[index], index, size, proof, root)


@settings(max_examples=200, deadline=None)
@given(size=sizes, data=st.data())
def test_mutated_inclusion_proofs_fail(size: int, data: st.DataObject) -> None:
    leaves = leaves_for(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = ref.path(index, leaves)
    root = ref.mth(leaves)
    leaf = leaves[index]

    def fails(lf: bytes, i: int, n: int, pr: list[bytes], rt: bytes) -> None:
        with pytest.raises((InclusionError, MalformedError)):
            merkle.verify_inclusion(lf, i, n, pr, rt)

    bit = data.draw(st.integers(min_value=0, max_value=255))
    flip = lambda h: bytes(b ^ (1 << (bit % 8)) if k == bit // 8 else b for k, b in enumerate(h))  # noqa: E731
    fails(flip(leaf), index, size, proof, root)
    fails(leaf, index, size, proof, flip(root))
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        fails(leaf, index, size, [*proof[:k], flip(proof[k]), *proof[k + 1 :]], root)
        fails(leaf, index, size, proof[:-1], root)
        fails(leaf, index, size, proof[1:], root)
        fails(leaf, index, size, [*proof[:k], proof[k][:31], *proof[k + 1 :]], root)
    fails(leaf, index, size, [*proof, root], root)
    fails(leaf, index, size, [root, *proof], root)
    other = data.draw(st.integers(min_value=0, max_value=2 * size))
    assume(other != index)
    fails(leaf, other, size, proof, root)
    # A wrong size fails exactly when the reference says so (a proof for (0, 3)
    # is also well-formed for (0, 4): RFC 9162 verification binds the root, not the size).
    wrong = data.draw(st.integers(min_value=1, max_value=2 * size + 2))
    assume(wrong != size)
    expect = ref.verify_inclusion(leaf, index, wrong, proof, root)
    if expect:
        merkle.verify_inclusion(leaf, index, wrong, proof, root)
    else:
        fails(leaf, index, wrong, proof, root)


@settings(max_examples=150, deadline=None)
@given(size2=sizes, data=st.data())
def test_consistency_proofs_build_verify_and_resist_mutation(
    size2: int, data: st.DataObject
) -> None:
    leaves = leaves_for(size2)
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    proof = merkle.consistency_proof(as_array(leaves), size1, size2)
    assert proof == ref.consistency(size1, leaves)
    r1, r2 = ref.mth(leaves[:size1]), ref.mth(leaves)
    merkle.verify_consistency(size1, size2, r1, r2, proof)
    assert ref.verify_consistency(size1, size2, r1, r2, proof)

    def fails(m: int, n: int, a: bytes, b: bytes, pr: list[bytes]) -> None:
        with pytest.raises((ConsistencyError, MalformedError)):
            merkle.verify_consistency(m, n, a, b, pr)

    flip = lambda h: bytes([h[0] ^ 0x40, *h[1:]])  # noqa: E731
    if size1 < size2:
        fails(size1, size2, flip(r1), r2, proof)
        fails(size1, size2, r1, flip(r2), proof)
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        fails(size1, size2, r1, r2, [*proof[:k], flip(proof[k]), *proof[k + 1 :]])
        fails(size1, size2, r1, r2, proof[:-1])
        fails(size1, size2, r1, r2, [*proof, r2])
        fails(size1, size2, r2, r1, proof)
    wrong = data.draw(st.integers(min_value=0, max_value=size2 + 3))
    assume(wrong != size1)
    if ref.verify_consistency(wrong, size2, r1, r2, proof):
        merkle.verify_consistency(wrong, size2, r1, r2, proof)
    else:
        fails(wrong, size2, r1, r2, proof)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=300), max_size=70),
    cut=st.integers(min_value=0, max_value=70),
)
def test_native_hashing_and_ranges_equal_reference(entries: list[bytes], cut: int) -> None:
    want = [ref.leaf(e) for e in entries]
    got = merkle.hash_leaves(entries)
    assert [bytes(r) for r in got] == want
    assert merkle.root(got) == ref.mth(want)
    cut = min(cut, len(entries))
    left = CompactRange()
    left.extend(got[:cut])
    right = CompactRange(cut, ())
    for h in want[cut:]:
        right.append(h)
    left.merge(right)
    assert left.root() == ref.mth(want)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=64),
    picks=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40),
    corrupt=st.lists(st.integers(min_value=0, max_value=10**6), max_size=5),
)
def test_batch_equals_singles(size: int, picks: list[int], corrupt: list[int]) -> None:
    leaves = leaves_for(size)
    root = ref.mth(leaves)
    idx = [p % size for p in picks]
    proofs = [ref.path(i, leaves) for i in idx]
    leaf_arr = as_array([leaves[i] for i in idx]).copy()
    for c in corrupt:
        leaf_arr[c % len(idx), c % 32] ^= 0x10
    flat, offsets = merkle.flatten_proofs(proofs)
    res = merkle.verify_inclusion_batch(leaf_arr, idx, size, flat, offsets, root)
    singles = []
    for k, i in enumerate(idx):
        try:
            merkle.verify_inclusion(bytes(leaf_arr[k]), i, size, proofs[k], root)
            singles.append(True)
        except InclusionError:
            singles.append(False)
    assert res.ok.tolist() == singles
    bad = [k for k, ok in enumerate(singles) if not ok]
    assert res.first_failure == (bad[0] if bad else None)
