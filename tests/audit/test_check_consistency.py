"""check_consistency: a new checkpoint against the latest stored one of its origin."""

from __future__ import annotations

from pathlib import Path

import pytest
from rekorkit import merkle
from rekorkit.audit.tilelog import check_consistency
from rekorkit.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from rekorkit.errors import DivergenceError
from rekorkit.note import Ed25519Signer, sign_note
from rekorkit.store import StoredCheckpoint
from rekorkit.store.duckdb import DuckDBStore

ORIGIN = "example.test/log"
LEAVES = [merkle.leaf_hash(b"entry %d" % i) for i in range(8)]


SIGNER = Ed25519Signer.generate(ORIGIN)


def signed(size: int, root: bytes) -> SignedCheckpoint:
    note = sign_note(Checkpoint(ORIGIN, size, root).to_bytes(), SIGNER)
    return open_checkpoint(note, SIGNER.verifier())


def test_a_stored_empty_tree_is_extended_by_any_tree(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        store.add_checkpoint(StoredCheckpoint(ORIGIN, 0, merkle.EMPTY_ROOT, b"empty\n"))
        old = check_consistency(store, signed(8, merkle.root(LEAVES)), None)
    assert old is not None and old.size == 0


def test_a_stored_empty_tree_with_another_root_is_divergence(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        store.add_checkpoint(StoredCheckpoint(ORIGIN, 0, b"\x01" * 32, b"bad empty\n"))
        with pytest.raises(DivergenceError) as err:
            check_consistency(store, signed(8, merkle.root(LEAVES)), None)
    assert err.value.evidence["old_size"] == 0


def test_a_larger_tree_needs_a_proof(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        store.add_checkpoint(StoredCheckpoint(ORIGIN, 3, merkle.root(LEAVES[:3]), b"three\n"))
        new = signed(8, merkle.root(LEAVES))
        with pytest.raises(DivergenceError):
            check_consistency(store, new, None)
        proof = merkle.consistency_proof(LEAVES, 3, 8)
        assert check_consistency(store, new, proof) is not None
