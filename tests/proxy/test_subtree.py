"""Subtree consistency proofs against the transparency-dev vectors, and generated ones."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit import merkle
from rekorkit.errors import ConsistencyError
from rekorkit.proxy.subtree import subtree_consistency_proof, verify_subtree_consistency
from vector_files import require_vectors


def _vectors() -> list[Path]:
    root = require_vectors("transparency-dev-merkle", "testdata", "subtreeconsistency")
    return sorted(root.rglob("*.json"))


def test_every_vector_is_accepted_or_refused_as_it_says() -> None:
    files = _vectors()
    assert len(files) > 100
    for path in files:
        v = json.loads(path.read_text())
        proof = [base64.b64decode(h) for h in v["proof"] or []]
        root1, root2 = base64.b64decode(v["root1"]), base64.b64decode(v["root2"])
        args = (v["start"], v["end"], v["size"], proof, root1, root2)
        if v["wantErr"]:
            with pytest.raises(ConsistencyError):
                verify_subtree_consistency(*args)
        else:
            verify_subtree_consistency(*args)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"%d" % i) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 600), st.data())
def test_generated_proofs_verify_and_changed_ones_do_not(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    width = 1 << data.draw(st.integers(0, max(0, (size - 1).bit_length())))
    start = data.draw(st.integers(0, (size - 1) // width)) * width
    end = data.draw(st.integers(start + 1, min(size, start + width)))
    proof = subtree_consistency_proof(start, end, leaves)
    sub, root = merkle.root(leaves[start:end]), merkle.root(leaves)
    verify_subtree_consistency(start, end, size, proof, sub, root)
    with pytest.raises(ConsistencyError):
        verify_subtree_consistency(start, end, size, proof, sub, merkle.leaf_hash(b"other"))
    if proof:
        bad = [*proof[:-1], bytes(32)]
        with pytest.raises(ConsistencyError):
            verify_subtree_consistency(start, end, size, bad, sub, root)


def test_tlog_mirror_packages_are_subtrees() -> None:
    """Packages [256 i, end) of a 1000-entry upload, as c2sp.org/tlog-mirror cuts them."""
    leaves = _leaves(1000)
    root = merkle.root(leaves)
    for base in range(0, 1000, 256):
        end = min(1000, base + 256)
        proof = subtree_consistency_proof(base, end, leaves)
        assert len(proof) <= 63
        verify_subtree_consistency(base, end, 1000, proof, merkle.root(leaves[base:end]), root)
    with pytest.raises(ConsistencyError, match="not a subtree"):
        subtree_consistency_proof(100, 356, leaves)
