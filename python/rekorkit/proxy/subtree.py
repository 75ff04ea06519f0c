"""Subtree consistency proofs (draft-ietf-plants-merkle-tree-certs §4.4), as the
c2sp.org/tlog-mirror ``add-entries`` packages carry them.

A subtree ``[start, end)`` is valid when ``start`` is a multiple of the
smallest power of two >= ``end - start``. Its consistency proof with a tree of
``size`` leaves shows that the subtree's hash is the hash of those leaves in
that tree. With ``start == 0`` it is the RFC 9162 §2.1.4 consistency proof
from ``end`` to ``size``.

A proof has O(log n) hashes, folded here in Python with the native node hash
(one proof per 256-entry package); the leaves are hashed by the caller in one
native call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from rekorkit import merkle
from rekorkit.errors import ConsistencyError, InclusionError

__all__ = ["subtree_consistency_proof", "verify_subtree_consistency"]

_EMPTY = hashlib.sha256(b"").digest()  # the hash of the empty tree (RFC 9162 §2.1.1)


def _check_subtree(start: int, end: int, size: int) -> None:
    if not 0 <= start < end <= size:
        raise ConsistencyError(
            f"subtree [{start}, {end}) is not inside a tree of size {size}",
            start=start,
            end=end,
            size=size,
        )
    if start % (1 << (end - start - 1).bit_length()):
        raise ConsistencyError(
            f"[{start}, {end}) is not a subtree: {start} is not a multiple of the "
            f"smallest power of two >= {end - start}",
            start=start,
            end=end,
            size=size,
        )


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def _root_from_proof(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_hash: bytes
) -> bytes:
    """The root of the tree of ``size`` that ``proof`` implies (raises on a bad shape)."""
    _check_subtree(start, end, size)
    where = {"start": start, "end": end, "size": size, "proof_len": len(proof)}
    if start == 0 and end == size:
        if proof:
            raise ConsistencyError("the subtree is the whole tree: its proof is empty", **where)
        return subtree_hash
    height = ((end - 1) ^ start).bit_length()  # the level of the subtree's root node
    if end == size:
        # On the right border: one left sibling per level where the node is a right child.
        if len(proof) != (start >> height).bit_count():
            raise ConsistencyError("wrong proof length for a subtree on the right edge", **where)
        node = subtree_hash
        for left in proof:
            node = merkle.node_hash(left, node)
        return node
    fork = ((end - 1) ^ (size - 1)).bit_length()  # where the paths to end-1 and size-1 part
    low = _trailing_zeros(end - start)  # the level of the subtree's last perfect part
    perfect = end - start == 1 << low
    want = (0 if perfect else 1) + (fork - low) + ((end - 1) >> fork).bit_count()
    if len(proof) != want:
        raise ConsistencyError(f"wrong proof length, expected {want}", **where)
    rest = list(proof) if perfect else list(proof[1:])
    seed = subtree_hash if perfect else proof[0]
    # Climb from the last perfect part to the subtree's root twice: as it is in
    # the tree of size ``end`` (must give ``subtree_hash``), and as it has grown
    # in the tree of ``size`` (its right siblings below the fork now exist).
    inside, grown, k = seed, seed, 0
    for level in range(low, height):
        if ((end - 1) >> level) & 1:
            inside = merkle.node_hash(rest[k], inside)
            grown = merkle.node_hash(rest[k], grown)
            k += 1
        elif level < fork:
            grown = merkle.node_hash(grown, rest[k])
            k += 1
    if inside != subtree_hash:
        raise ConsistencyError(
            "the proof does not rebuild the subtree hash",
            expected=subtree_hash,
            actual=inside,
            **where,
        )
    # What is left is the inclusion path of the grown node, one level per hash.
    return _fold_inclusion(start >> height, ((size - 1) >> height) + 1, grown, rest[k:])


def _fold_inclusion(index: int, size: int, node: bytes, path: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 from a node hash: the root its inclusion path leads to."""
    fn, sn = index, size - 1
    for sibling in path:
        if sn == 0:
            raise InclusionError("inclusion path longer than the tree", index=index, size=size)
        if fn & 1 or fn == sn:
            node = merkle.node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = merkle.node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InclusionError("inclusion path shorter than the tree", index=index, size=size)
    return node


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_hash: bytes, root: bytes
) -> None:
    """Checks that the subtree ``[start, end)`` with ``subtree_hash`` is part of the tree of
    ``size`` leaves with ``root`` (draft-ietf-plants-merkle-tree-certs §4.4.3).

    Raises:
        ConsistencyError: an invalid subtree, a proof of the wrong length, or
            hashes that do not lead to ``subtree_hash`` and ``root`` (evidence:
            the positions, expected and actual hashes).
    """
    if any(len(h) != 32 for h in proof):
        raise ConsistencyError("a proof hash is not 32 bytes", start=start, end=end, size=size)
    if start == end and 0 <= end <= size:
        # An empty subtree proves nothing; like transparency-dev/merkle, its only
        # valid form is the empty-tree hash with an empty proof, whatever the root.
        if proof or subtree_hash != _EMPTY:
            raise ConsistencyError(
                "an empty subtree has the empty-tree hash and an empty proof",
                start=start,
                end=end,
                size=size,
            )
        return
    try:
        actual = _root_from_proof(start, end, size, proof, subtree_hash)
    except InclusionError as exc:
        raise ConsistencyError(str(exc), start=start, end=end, size=size) from exc
    if actual != root:
        raise ConsistencyError(
            f"the proof for [{start}, {end}) leads to another root of size {size}",
            start=start,
            end=end,
            size=size,
            expected=root,
            actual=actual,
        )


def subtree_consistency_proof(start: int, end: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof for subtree ``[start, end)`` in the tree of ``leaf_hashes``
    (draft-ietf-plants-merkle-tree-certs §4.4.1); what a pushing log sends.

    Raises:
        ConsistencyError: ``[start, end)`` is not a subtree of that tree.
    """
    size = len(leaf_hashes)
    _check_subtree(start, end, size)
    return _subtree_proof(start, end, list(leaf_hashes))


def _subtree_proof(start: int, end: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if start == 0:
        return [] if end == n else merkle.consistency_proof(leaves, end, n)
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two below n
    if end <= k:
        return [*_subtree_proof(start, end, leaves[:k]), merkle.root(leaves[k:])]
    # A valid subtree that does not start at 0 never straddles k.
    return [*_subtree_proof(start - k, end - k, leaves[k:]), merkle.root(leaves[:k])]
