"""Hostile input to the parsers and verifiers: only RekorKitErrors come out.

One test per defect found by fuzzing the public API: sizes checked before
allocation, integers and buffers refused at the edge, no panic across the
Rust boundary, no recursion on untrusted JSON depth, lone surrogates refused.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from rekorkit import merkle, tiles
from rekorkit.boundedjson import MAX_DEPTH, loads, nesting_depth
from rekorkit.checkpoint import open_checkpoint, parse_checkpoint
from rekorkit.entries import LogEntry, verify_entry
from rekorkit.errors import ConsistencyError, InclusionError, MalformedError
from rekorkit.note import Ed25519Signer, parse_verifier_key
from rekorkit.tlogproof import parse_tlog_proof, verify_tlog_proof

BUNDLE = tiles.encode_entry_bundle([b"x"])


@pytest.mark.parametrize(
    ("skip", "take"), [(0, 2**31), (0, 2**64 - 1), (2**64 - 1, 1), (255, 2), (0, 2**63)]
)
def test_entry_columns_checks_counts_before_allocating(skip: int, take: int) -> None:
    with pytest.raises(MalformedError, match="bundles hold at most 256"):
        tiles.entry_columns([BUNDLE], skip, take)


@pytest.mark.parametrize("bad", [-1, 2**64, 2**100, 1.5, "3", None])
def test_integer_arguments_are_malformed_not_overflow(bad: object) -> None:
    calls = [
        lambda: tiles.entry_columns([BUNDLE], bad, 1),  # type: ignore[arg-type]
        lambda: tiles.entry_columns([BUNDLE], 0, bad),  # type: ignore[arg-type]
        lambda: tiles.bundle_prefix_len(BUNDLE, bad),  # type: ignore[arg-type]
        lambda: tiles.verify_bundle_against_tile(BUNDLE, bytes(32), tile_index=bad),  # type: ignore[arg-type]
        lambda: tiles.partial_width(bad, 5),  # type: ignore[arg-type]
        lambda: tiles.inclusion_proof_tiles(bad, 5),  # type: ignore[arg-type]
        lambda: merkle.inclusion_proof(merkle.hash_leaves([b"a"]), bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(MalformedError) as info:
            call()
        assert info.value.what in ("integer argument", "argument", "tile")


@pytest.mark.parametrize("threads", [-1, 0, 1025, 2**40, 2**64])
def test_thread_counts_are_bounded(threads: int) -> None:
    leaves = np.zeros((4, 32), np.uint8)
    with pytest.raises(MalformedError, match=r"threads|integer"):
        merkle.root(leaves, threads=threads)
    with pytest.raises(MalformedError, match=r"threads|integer"):
        tiles.verify_bundles_against_tiles([BUNDLE], [bytes(32)], [0], threads=threads)


def test_huge_trees_do_not_panic() -> None:
    # Paths through the top bit of a 64-bit tree once shifted by 64 in the core.
    for index in (0, 2**63, 2**64 - 2):
        assert tiles.inclusion_proof_tiles(index, 2**64 - 1)
        assert tiles.inclusion_proof_nodes(index, 2**64 - 1)
    assert tiles.consistency_proof_tiles(2**63, 2**64 - 1)


def test_lone_surrogates_are_malformed() -> None:
    with pytest.raises(MalformedError, match="surrogate"):
        tiles.parse_tile_path("tile/0/\udcff")
    signer = Ed25519Signer.generate("example.org/log")
    verifier = parse_verifier_key(signer.verifier().vkey)
    for call in (
        lambda: open_checkpoint("example.org/log\n1\n\udcff\n", verifier),
        lambda: parse_tlog_proof("c2sp.org/tlog-proof@v1\nindex 0\n\n\udcff"),
        lambda: verify_tlog_proof("c2sp.org/tlog-proof@v1\n\udcff", b"leaf", verifier),
        lambda: parse_verifier_key("\udcff+01234567+AQ=="),
        lambda: parse_checkpoint("\udcff\n1\nAAAA\n"),
    ):
        with pytest.raises(MalformedError):
            call()


def test_buffers_that_would_need_a_copy_are_malformed() -> None:
    with pytest.raises(MalformedError, match="C-contiguous"):
        tiles.parse_hash_tile(memoryview(bytes(128))[::2])
    with pytest.raises(MalformedError, match="C-contiguous"):
        tiles.tile_root(np.zeros((4, 64), np.uint8)[:, ::2])
    with pytest.raises(MalformedError, match="uint8"):
        tiles.tile_root(np.zeros(8, np.uint32))
    # A writable buffer is copied before the GIL is released, and hashes the same.
    tile = bytes(range(64))
    assert tiles.tile_root(bytearray(tile)) == tiles.tile_root(tile)
    assert tiles.tile_root(memoryview(tile)) == tiles.tile_root(tile)


def test_equal_size_consistency_needs_32_byte_hashes() -> None:
    with pytest.raises(MalformedError):
        merkle.verify_consistency(5, 5, 32, 32, [])  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="32 bytes"):
        merkle.verify_consistency(5, 5, b"abc", b"abc", [])
    merkle.verify_consistency(5, 5, bytes(32), bytearray(32), [])
    with pytest.raises(ConsistencyError):
        merkle.verify_consistency(5, 5, bytes(32), b"\x01" * 32, [])
    with pytest.raises(ConsistencyError, match="unsigned 64-bit"):
        merkle.verify_consistency(-5, -5, bytes(32), bytes(32), [])


def test_batch_verifiers_take_indices_past_two_to_the_63_exactly() -> None:
    leaves = merkle.hash_leaves([b"a", b"b"])
    big = [2**63, 1]
    result = merkle.verify_inclusion_batch(
        leaves, big, [2**64 - 1, 2**63 + 1], np.zeros((0, 32), np.uint8), [0, 0, 0], bytes(32)
    )
    # Both fail on the proof length, not on the conversion: the sizes arrived exactly.
    assert result.ok.tolist() == [False, False]
    assert result.reason is not None and "expected 64" in result.reason
    with pytest.raises(MalformedError, match="index 1"):
        merkle.verify_inclusion_batch(leaves, [0, 0.5], 2, leaves, [0, 0, 0], bytes(32))
    with pytest.raises(MalformedError, match="index 0"):
        merkle.verify_inclusion_batch(leaves, [2**64, 0], 2, leaves, [0, 0, 0], bytes(32))


def test_single_verifier_out_of_range_is_an_inclusion_error() -> None:
    with pytest.raises(InclusionError):
        merkle.verify_inclusion(bytes(32), np.uint64(3), 2, [], bytes(32))
    with pytest.raises(InclusionError, match="unsigned 64-bit"):
        merkle.verify_inclusion(bytes(32), 0, 2**64, [], bytes(32))


def _deep_entry(body: bytes) -> dict[str, object]:
    return {
        "a" * 64: {
            "body": base64.b64encode(body).decode(),
            "integratedTime": 1,
            "logID": "00" * 32,
            "logIndex": 1,
            "verification": {},
        }
    }


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 200 + b"]" * 200])
def test_deep_json_bodies_are_malformed_not_recursion(body: bytes) -> None:
    obj = _deep_entry(body)
    entry = LogEntry.from_json(obj)
    with pytest.raises(MalformedError, match="nested"):
        entry.body_json  # noqa: B018
    with pytest.raises(MalformedError, match="nested"):
        entry.to_transparency_log_entry()
    with pytest.raises(MalformedError, match="nested"):
        verify_entry(obj)
    with pytest.raises(MalformedError):
        LogEntry.from_json(json.dumps(obj)[:-1] + "[" * 100_000)


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth('{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert nesting_depth(r'["\"[[[[", [[]]]') == 3
    text = json.dumps({"k": "[" * (MAX_DEPTH + 5)})
    assert loads(text, what="test") == {"k": "[" * (MAX_DEPTH + 5)}
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(MalformedError, match=f"nested {MAX_DEPTH + 1} deep"):
        loads(deep, what="test")
    assert loads(deep, what="test", max_depth=MAX_DEPTH + 1) is not None
    with pytest.raises(MalformedError, match="JSON text"):
        loads(b"\xff\xfe{", what="test")
    with pytest.raises(MalformedError, match="not JSON"):
        loads("[1,", what="test")
