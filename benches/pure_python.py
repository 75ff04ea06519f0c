"""Pure-Python (hashlib) baselines: what a Python client does without rekorkit.

The inclusion check follows the decomposition used by sigstore-python's
``verify_merkle_inclusion``; consistency is the RFC 9162 §2.1.4.2 loop of the
tests' reference (``tests/merkle_reference.py``, put on the path by
``benches/conftest.py``), not a second copy of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from merkle_reference import verify_consistency

__all__ = [
    "consistency_roots",
    "consistency_shape",
    "inclusion_root",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH with a stack of perfect subtrees (O(log n) memory, like the native one)."""
    stack: list[tuple[int, bytes]] = []
    for h in leaves:
        level = 0
        while stack and stack[-1][0] == level:
            h = node_hash(stack.pop()[1], h)
            level += 1
        stack.append((level, h))
    if not stack:
        return _sha256(b"").digest()
    h = stack.pop()[1]
    while stack:
        h = node_hash(stack.pop()[1], h)
    return h


def inclusion_root(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies (inner/border chaining)."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(proof) != inner + border:
        raise ValueError("wrong proof length")
    h = leaf
    for i, p in enumerate(proof[:inner]):
        h = node_hash(h, p) if (index >> i) & 1 == 0 else node_hash(p, h)
    for p in proof[inner:]:
        h = node_hash(p, h)
    return h


def consistency_shape(size1: int, size2: int) -> int:
    """Number of hashes in a consistency proof for 0 < size1 < size2 (RFC 9162 §2.1.4.2)."""
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = bin((size1 - 1) >> inner).count("1")
    shift = (size1 & -size1).bit_length() - 1
    return (inner - shift) + border + (0 if size1 == 1 << shift else 1)


def consistency_roots(size1: int, size2: int, proof: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The (old, new) roots a proof implies, for size1 not a power of two (RFC 9162 §2.1.4.2)."""
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, rest = proof[0], proof[1:]
    mask = (size1 - 1) >> shift
    h1 = h2 = seed
    for i, p in enumerate(rest[:inner]):
        if (mask >> i) & 1:
            h1 = node_hash(p, h1)
            h2 = node_hash(p, h2)
        else:
            h2 = node_hash(h2, p)
    for p in rest[inner:]:
        h1 = node_hash(p, h1)
        h2 = node_hash(p, h2)
    return h1, h2
