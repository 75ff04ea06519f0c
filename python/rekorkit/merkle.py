"""RFC 6962 / RFC 9162 Merkle hashing, tree roots and proofs over the Rust core.

Single hashes are ``bytes`` of 32. Lists of hashes are numpy ``uint8`` arrays
of shape ``(n, 32)``, C-contiguous, read without a copy; ``bytes`` of
``32 * n`` and lists of 32-byte ``bytes`` are accepted too. Input that would
need a silent copy (wrong dtype, shape or strides) raises
:class:`~rekorkit.errors.MalformedError`. Batch calls release the GIL and
spread the work over ``threads`` cores (default: all).

Consistency policy (RFC 9162 §2.1.4): a proof from old size 0 is rejected, as in
transparency-dev/merkle. The empty tree is a prefix of every tree, so the
witness protocol accepts an empty proof from size 0; do that at the protocol
layer after checking that the old root is :data:`EMPTY_ROOT`.

Example::

    leaves = merkle.hash_leaves(entries)                  # (n, 32) uint8
    head = merkle.root(leaves)
    proofs, offsets = merkle.inclusion_proofs(leaves, indices)
    result = merkle.verify_inclusion_batch(
        leaves[indices], indices, len(leaves), proofs, offsets, head
    )
    assert result.all_ok, (result.first_failure, result.reason)
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from rekorkit import _native
from rekorkit._native import CompactRange
from rekorkit.errors import ConsistencyError, InclusionError, MalformedError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "BatchResult",
    "CompactRange",
    "HashArray",
    "consistency_proof",
    "consistency_proofs",
    "flatten_proofs",
    "hash_leaves",
    "hash_leaves_buffer",
    "inclusion_proof",
    "inclusion_proofs",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_consistency_batch",
    "verify_inclusion",
    "verify_inclusion_batch",
]

HashArray: TypeAlias = npt.NDArray[np.uint8]
"""A list of hashes: a C-contiguous uint8 array of shape ``(n, 32)``."""

HashesLike: TypeAlias = HashArray | bytes | Sequence[bytes]
IntsLike: TypeAlias = npt.ArrayLike

#: The root of the empty tree, ``SHA-256("")`` (RFC 6962 §2.1).
EMPTY_ROOT: bytes = _native.EMPTY_ROOT


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of a batch verification.

    Attributes:
        ok: one flag per item, ``True`` where the proof verified.
        first_failure: index of the first failing item, or ``None``.
        reason: why that item failed, or ``None``.
    """

    ok: npt.NDArray[np.bool_]
    first_failure: int | None
    reason: str | None

    @property
    def all_ok(self) -> bool:
        """Whether every item verified."""
        return self.first_failure is None


def _bytes(value: object, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        # A row of a hash array, e.g. ``leaf_hashes[i]``.
        return value.tobytes()
    raise MalformedError(f"{what}: expected bytes, got {type(value).__name__}", what=what)


def _hash32(value: object, what: str) -> bytes:
    """One 32-byte hash, or :class:`MalformedError` naming ``what``."""
    data = _bytes(value, what)
    if len(data) != 32:
        raise MalformedError(
            f"{what}: expected 32 bytes, got {len(data)}", what=what, where="length"
        )
    return data


def _is_u64(value: object) -> bool:
    n = _index(value)
    return n is not None and 0 <= n < 1 << 64


def _require_u64(
    error: type[VerificationError], ints: dict[str, object], **evidence: object
) -> None:
    """Raises ``error`` (with the evidence) unless every value of ``ints`` fits uint64:
    a tree position no 64-bit log can have does not verify."""
    bad = [f"{name} {value!r:.40}" for name, value in ints.items() if not _is_u64(value)]
    if bad:
        raise error(f"{', '.join(bad)}: not an unsigned 64-bit integer", **ints, **evidence)


def _hashes(value: object, what: str) -> object:
    """Passes bytes, arrays and lists to the core; views other buffers without a copy."""
    if isinstance(value, bytes | np.ndarray | list):
        return value
    if isinstance(value, bytearray | memoryview):
        flat = np.frombuffer(value, dtype=np.uint8)
        if flat.size % 32:
            raise MalformedError(
                f"{what}: length {flat.size} is not a multiple of 32", what=what, where="length"
            )
        return flat.reshape(-1, 32)
    if isinstance(value, tuple):
        return list(value)
    raise MalformedError(
        f"{what}: expected a (n, 32) uint8 array, bytes or a list of bytes, "
        f"got {type(value).__name__}",
        what=what,
    )


def _shared_hashes(value: object, what: str) -> object:
    """Like :func:`_hashes`, but one hash (bytes or a 32-byte row) means one shared value."""
    if isinstance(value, bytes | bytearray | memoryview) and len(value) == 32:
        return bytes(value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape[0] == 32:
        return value.reshape(1, 32)
    return _hashes(value, what)


def _count(value: HashesLike) -> int:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else 0
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value) // 32
    return len(value)


def _u64(value: IntsLike, what: str) -> npt.NDArray[np.uint64]:
    """A 1-D contiguous uint64 array; negative or non-integer values are malformed.

    A Python sequence numpy cannot type as integers (values at or above
    2^63 beside others make it float64 or object) is converted value by
    value, exactly, never through floats.
    """
    if isinstance(value, int):
        value = [value]
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedError(f"{what}: not an array of integers ({exc})", what=what) from exc
    if arr.dtype == np.uint64 and arr.ndim == 1 and arr.flags.c_contiguous:
        return arr
    if arr.ndim != 1:
        raise MalformedError(
            f"{what}: expected a 1-D integer array, got shape {arr.shape}", what=what, where="shape"
        )
    if arr.size == 0 or (arr.dtype.kind in "fO" and not isinstance(value, np.ndarray)):
        return _exact_u64(value, what)  # type: ignore[arg-type]
    if arr.dtype.kind not in "iu":
        raise MalformedError(
            f"{what}: expected integers, got dtype {arr.dtype}", what=what, where="dtype"
        )
    if arr.dtype.kind == "i":
        negative = np.flatnonzero(arr < 0)
        if negative.size:
            i = int(negative[0])
            raise MalformedError(
                f"{what}: index {i} is negative ({int(arr[i])})", what=what, where=f"index {i}"
            )
    return np.ascontiguousarray(arr, dtype=np.uint64)


def _exact_u64(values: Iterable[object], what: str) -> npt.NDArray[np.uint64]:
    """Converts a sequence of Python integers one by one, naming the first bad one."""
    out = []
    for i, v in enumerate(values):
        n = _index(v)
        if n is None or not 0 <= n < 1 << 64:
            raise MalformedError(
                f"{what}: values must be integers in [0, 2^64); index {i} is {v!r:.40}",
                what=what,
                where=f"index {i}",
            )
        out.append(n)
    return np.array(out, dtype=np.uint64)


def _index(value: object) -> int | None:
    """``value`` as an exact int (ints and numpy integers, not bools or floats), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def leaf_hash(data: bytes) -> bytes:
    """Leaf hash ``SHA-256(0x00 || data)`` (RFC 6962 §2.1)."""
    return _native.leaf_hash(_bytes(data, "leaf data"))


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash ``SHA-256(0x01 || left || right)`` (RFC 6962 §2.1).

    Children are normally 32-byte hashes, but any byte strings are hashed as the RFC writes it.
    """
    return _native.node_hash(_bytes(left, "left hash"), _bytes(right, "right hash"))


def hash_leaves(entries: Sequence[bytes], *, threads: int | None = None) -> HashArray:
    """Leaf hashes of ``entries`` as one ``(n, 32)`` array.

    Args:
        entries: the leaf data, each ``bytes``.
        threads: cores to use (default all); small batches stay on one.
    """
    return _native.hash_leaves(entries, threads)


def hash_leaves_buffer(
    buf: bytes | HashArray | bytearray | memoryview,
    offsets: IntsLike,
    *,
    threads: int | None = None,
) -> HashArray:
    """Leaf hashes of the entries ``buf[offsets[i]:offsets[i + 1]]``, as an ``(n, 32)`` array.

    Args:
        buf: all entries back to back (``bytes``, a 1-D uint8 array or any buffer).
        offsets: ``n + 1`` non-decreasing byte offsets into ``buf``.
        threads: cores to use (default all).
    """
    if isinstance(buf, bytearray | memoryview):
        buf = np.frombuffer(buf, dtype=np.uint8)
    return _native.hash_leaves_buffer(buf, _u64(offsets, "entry offsets"), threads)


def root(leaf_hashes: HashesLike, *, threads: int | None = None) -> bytes:
    """Merkle Tree Hash (RFC 6962 §2.1) of ``leaf_hashes``; :data:`EMPTY_ROOT` for none.

    Extra memory is O(log n). Above 32768 leaves the work is split over ``threads`` cores.
    """
    return _native.root(_hashes(leaf_hashes, "leaf hashes"), threads)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes] | HashArray, root: bytes
) -> None:
    """Checks that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises:
        InclusionError: the proof does not verify (index >= size, wrong length, wrong root).
        MalformedError: a hash is not 32 bytes.
    """
    _require_u64(InclusionError, {"index": index, "size": size}, leaf_hash=leaf_hash, root=root)
    try:
        _native.verify_inclusion(
            _bytes(leaf_hash, "leaf hash"),
            index,
            size,
            _hashes(proof, "proof"),
            _bytes(root, "root"),
        )
    except InclusionError as exc:
        exc.evidence.update(leaf_hash=leaf_hash, root=root)
        raise


def flatten_proofs(proofs: Sequence[Sequence[bytes]]) -> tuple[HashArray, npt.NDArray[np.uint64]]:
    """Packs per-item proofs into the ``(hashes, offsets)`` layout the batch verifiers take."""
    offsets = np.zeros(len(proofs) + 1, dtype=np.uint64)
    np.cumsum([len(p) for p in proofs], out=offsets[1:])
    joined = b"".join(b"".join(p) for p in proofs)
    if len(joined) != 32 * int(offsets[-1]):
        raise MalformedError("proofs: every proof hash must be 32 bytes", what="proofs")
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32), offsets


def verify_inclusion_batch(
    leaf_hashes: HashesLike,
    indices: IntsLike,
    sizes: IntsLike,
    proofs: HashesLike,
    proof_offsets: IntsLike,
    roots: HashesLike,
    *,
    threads: int | None = None,
) -> BatchResult:
    """Verifies many inclusion proofs in one call, with the GIL released.

    Args:
        leaf_hashes: ``(n, 32)`` leaf hashes.
        indices: ``n`` leaf indices.
        sizes: ``n`` tree sizes, or one size (an int) shared by all.
        proofs: every proof's hashes back to back, ``(m, 32)``.
        proof_offsets: ``n + 1`` offsets: proof ``i`` is ``proofs[off[i]:off[i + 1]]``.
        roots: ``(n, 32)`` roots, or one root shared by all.
        threads: cores to use (default all).

    Returns:
        A :class:`BatchResult`; nothing is raised for proofs that fail.

    Raises:
        MalformedError: arrays of the wrong type, shape or length.
    """
    ok, first, reason = _native.verify_inclusion_batch(
        _hashes(leaf_hashes, "leaf hashes"),
        _u64(indices, "indices"),
        _u64(sizes, "sizes"),
        _hashes(proofs, "proofs"),
        _u64(proof_offsets, "proof offsets"),
        _shared_hashes(roots, "roots"),
        threads,
    )
    return BatchResult(ok, first, reason)


def inclusion_proof(leaf_hashes: HashesLike, index: int, size: int | None = None) -> list[bytes]:
    """Builds the inclusion proof (RFC 6962 §2.1.1 PATH) of leaf ``index``.

    Args:
        leaf_hashes: all leaf hashes of the tree (at least ``size``).
        index: the leaf, ``0 <= index < size``.
        size: the tree size (default: every leaf given).

    Raises:
        ValueError: ``index >= size`` or ``size`` beyond the leaves given.
    """
    if size is None:
        size = _count(leaf_hashes)
    return _native.inclusion_proof(_hashes(leaf_hashes, "leaf hashes"), index, size)


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes] | HashArray
) -> None:
    """Checks that the tree ``(size2, root2)`` extends the tree ``(size1, root1)``.

    Policy (RFC 9162 §2.1.4): ``size1 == 0`` is an error (nothing to prove; accept
    an empty proof from size 0 at the protocol layer, checking ``root1 ==
    EMPTY_ROOT``); ``size1 > size2`` is an error; equal sizes need an empty
    proof and equal roots.

    Raises:
        ConsistencyError: the proof does not verify.
        MalformedError: a hash is not 32 bytes.
    """
    _require_u64(ConsistencyError, {"size1": size1, "size2": size2}, root1=root1, root2=root2)
    if size1 == size2 and size1 > 0:
        # Equal sizes prove nothing by hashing: the heads must be the same
        # 32-byte hashes (RFC 9162 §2.1.4, transparency-dev compares them as
        # opaque bytes, after checking their length).
        root1, root2 = _hash32(root1, "root1"), _hash32(root2, "root2")
        if _count(proof) != 0:
            raise ConsistencyError(
                f"consistency proof from size {size1} to {size2}: equal sizes need an empty proof",
                size1=size1,
                size2=size2,
                root1=root1,
                root2=root2,
            )
        if bytes(root1) != bytes(root2):
            raise ConsistencyError(
                f"consistency proof from size {size1} to {size2}: equal sizes with different roots",
                size1=size1,
                size2=size2,
                root1=root1,
                root2=root2,
            )
        return
    try:
        _native.verify_consistency(
            size1, size2, _bytes(root1, "root1"), _bytes(root2, "root2"), _hashes(proof, "proof")
        )
    except ConsistencyError as exc:
        exc.evidence.update(root1=root1, root2=root2)
        raise


def verify_consistency_batch(
    sizes1: IntsLike,
    sizes2: IntsLike,
    roots1: HashesLike,
    roots2: HashesLike,
    proofs: HashesLike,
    proof_offsets: IntsLike,
    *,
    threads: int | None = None,
) -> BatchResult:
    """Verifies many consistency proofs in one call, with the GIL released.

    ``sizes2`` and ``roots2`` may be one value shared by all items (many old
    checkpoints against one new one). Layout as in :func:`verify_inclusion_batch`.
    """
    ok, first, reason = _native.verify_consistency_batch(
        _u64(sizes1, "sizes1"),
        _u64(sizes2, "sizes2"),
        _hashes(roots1, "roots1"),
        _shared_hashes(roots2, "roots2"),
        _hashes(proofs, "proofs"),
        _u64(proof_offsets, "proof offsets"),
        threads,
    )
    return BatchResult(ok, first, reason)


def consistency_proof(leaf_hashes: HashesLike, size1: int, size2: int) -> list[bytes]:
    """Builds the consistency proof (RFC 6962 §2.1.2) from ``size1`` to ``size2``.

    Raises:
        ValueError: unless ``0 < size1 <= size2 <=`` the number of leaves given.
    """
    return _native.consistency_proof(_hashes(leaf_hashes, "leaf hashes"), size1, size2)


def inclusion_proofs(
    leaf_hashes: HashesLike,
    indices: IntsLike,
    size: int | None = None,
    *,
    threads: int | None = None,
) -> tuple[HashArray, npt.NDArray[np.uint64]]:
    """Builds many inclusion proofs at once, in the batch verifiers' layout.

    Every perfect node of the tree is hashed once (about ``size`` extra hashes
    of memory); each proof is then a few lookups, so thousands of proofs cost
    little more than one root.

    Args:
        leaf_hashes: all leaf hashes of the tree (at least ``size``).
        indices: the leaves to prove, each ``< size``.
        size: the tree size (default: every leaf given).
        threads: cores for hashing the levels (default all).

    Returns:
        ``(proofs, offsets)``: proof ``i`` is ``proofs[offsets[i]:offsets[i + 1]]``.

    Raises:
        ValueError: an index ``>= size`` or ``size`` beyond the leaves given.
    """
    if size is None:
        size = _count(leaf_hashes)
    return _native.inclusion_proofs(
        _hashes(leaf_hashes, "leaf hashes"), _u64(indices, "indices"), size, threads
    )


def consistency_proofs(
    leaf_hashes: HashesLike,
    sizes1: IntsLike,
    size2: int | None = None,
    *,
    threads: int | None = None,
) -> tuple[HashArray, npt.NDArray[np.uint64]]:
    """Builds consistency proofs from each of ``sizes1`` to ``size2`` at once.

    Same layout and cost model as :func:`inclusion_proofs`; equal sizes give
    empty proofs, and ``0`` or a size above ``size2`` raises ``ValueError``.
    """
    if size2 is None:
        size2 = _count(leaf_hashes)
    return _native.consistency_proofs(
        _hashes(leaf_hashes, "leaf hashes"), _u64(sizes1, "sizes1"), size2, threads
    )
