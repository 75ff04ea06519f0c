"""A small, slow, obviously-correct pure-Python RFC 6962 reference for the tests.

Written straight from the recursive definitions (RFC 6962 §2.1, §2.1.1,
§2.1.2) and the RFC 9162 §2.1.3.2 / §2.1.4.2 verification loops, so it shares
no structure with the native decomposition-based code it checks. The
benches' pure-Python baseline (``benches/pure_python.py``) times its
consistency check.
"""

from __future__ import annotations

import hashlib


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


_sha256 = hashlib.sha256  # one name lookup per node: the benches time this as a baseline


def node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    return _subproof(m, leaves, True)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, with the project's policy for the edges (RFC 9162 §2.1.4)."""
    if size1 == 0 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if not proof:
        return False
    if size1 & (size1 - 1) == 0:
        proof = [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0
