"""Bulk seeding: synthetic entries are validly signed, canonical, and land as tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rekorkit.entries.canonical import canonicalize_v1, dsse_v001_request, hashedrekord_v001_request
from rekorkit.merkle import hash_leaves, root
from rekorkit.server.log import TransparencyLog
from rekorkit.server.seed import SyntheticEntries, seed_log
from rekorkit.tiles import parse_entry_bundle


def test_dsse_bodies_are_what_rekor_would_store() -> None:
    gen = SyntheticEntries()
    start = 4096 - 3  # straddles two signature groups
    bodies = gen.dsse_bodies(start, 6)
    assert len(set(bodies)) == 6
    for k, body in enumerate(bodies):
        request = dsse_v001_request(gen.dsse_envelope(start + k), [gen.public_pem])
        assert canonicalize_v1(request) == body  # the signature verifies, body is canonical


def test_hashedrekord_bodies_verify() -> None:
    gen = SyntheticEntries()
    (body,) = gen.hashedrekord_bodies([7])
    import base64
    import json

    spec = json.loads(body)["spec"]
    sig = base64.b64decode(spec["signature"]["content"])
    request = hashedrekord_v001_request(sig, gen.public_pem, gen.digest(7))
    assert canonicalize_v1(request) == body


def test_mixed_bodies_follow_the_share() -> None:
    gen = SyntheticEntries()
    bodies = gen.bodies(0, 40, hashedrekord_every=10)
    kinds = [b'"kind":"hashedrekord"' in b for b in bodies]
    assert kinds.count(True) == 4 and kinds[0] and kinds[10]


@pytest.mark.parametrize("workers", [0, 2])
def test_seed_writes_tiles_bundles_index_and_checkpoint(tmp_path: Path, workers: int) -> None:
    if workers:
        # The parent builds chunks itself until the pool is up; once the fork server
        # is warm (as after this first seed), the workers build most of them.
        warm = TransparencyLog(tmp_path / "warm")
        seed_log(warm, 40_000, workers=workers)
        warm.close()
    log = TransparencyLog(tmp_path / "log")
    log.integrate([b'{"first":1}', b'{"first":2}', b'{"first":3}'])  # start unaligned
    gen = SyntheticEntries()
    stats = seed_log(log, 70_000, workers=workers, generator=gen, hashedrekord_share=0.01)
    assert stats.entries == 70_000 and stats.size == 70_003 == log.state.size
    assert stats.hashedrekord == 700
    size = log.state.size
    bundles = [
        parse_entry_bundle(log.store.read_bundle(b, min(256, size - b * 256)))
        for b in range((size + 255) // 256)
    ]
    leaves = [e for bundle in bundles for e in bundle]
    assert len(leaves) == size and len(set(leaves)) == size
    hashes = hash_leaves(leaves)
    tiles = b"".join(
        log.read_tile(0, t, min(256, size - t * 256)) for t in range((size + 255) // 256)
    )
    assert np.array_equal(np.frombuffer(tiles, np.uint8).reshape(-1, 32), hashes)
    assert root(hashes) == log.state.root
    assert log.find(hashes[[5, 40_000, size - 1]]) == [5, 40_000, size - 1]
    log.close()
    reopened = TransparencyLog(tmp_path / "log")  # restart after a seed resumes at its checkpoint
    assert reopened.state.size == size and reopened.state.root == root(hashes)
    results, _ = reopened.integrate([leaves[123], b'{"after":"seed"}'])
    assert results[0].duplicate and results[0].index == 123
    assert results[1].index == size
    reopened.close()


def test_seed_cut_short_before_publish_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = TransparencyLog(tmp_path)
    empty_root = log.state.root

    def crash(self: TransparencyLog) -> None:
        raise RuntimeError("crash before publish")

    monkeypatch.setattr(TransparencyLog, "publish", crash)
    with pytest.raises(RuntimeError):
        seed_log(log, 40_000, workers=2, hashedrekord_share=0)
    written = [
        tmp_path / "tiles" / "tile" / d / n for d in ("entries", "0") for n in ("000", "155")
    ]
    assert all(p.exists() for p in written)  # full bundles and tiles, written in place
    log.close()
    monkeypatch.undo()
    reopened = TransparencyLog(tmp_path)  # recovery drops every file past the checkpoint
    assert reopened.state.size == 0 and reopened.state.root == empty_root
    assert not any(p.exists() for p in written)
    assert not list((tmp_path / "tiles" / "tile").rglob("*.p/*"))
    results, _ = reopened.integrate([b'{"after":"crash"}'])
    assert results[0].index == 0 and reopened.state.size == 1
    reopened.close()
