"""The client's memory of each log: the latest verified checkpoint per origin.

Every checkpoint a client accepts is compared with the latest one it already
trusts for the same origin. A larger one must be proven consistent with it
(a v1 proof from the log, or a v2 proof built from tiles); an equal size must
have an equal root; a smaller one is a rollback. Each failure is a
:class:`DivergenceError` carrying both checkpoints, the raw evidence a
monitor or a witness needs (RFC 9162 §2.1.4, DESIGN "Verify, then trust").

:meth:`CheckpointTracker.observe_many` accepts many checkpoints at once (the
responses of concurrent submissions): every proof it needs is a consistency
proof *to one tree size*, the largest checkpoint seen, so one set of tiles at
that size serves them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cachetools import LRUCache

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint
from rekorkit.client._flow import Flow
from rekorkit.errors import ConsistencyError, DivergenceError, MalformedError

__all__ = ["CheckpointTracker"]

ProofFlow = Callable[[SignedCheckpoint, SignedCheckpoint], Flow[list[bytes]]]
"""Given (older, newer) checkpoints, a flow returning the consistency proof hashes."""

ProofsFlow = Callable[[int, list[int]], Flow[list[list[bytes]]]]
"""Given a tree size and older sizes (each ``0 < s < size``), a flow returning
one consistency proof per older size, in order."""

# Tree heads remembered as accepted, per tracker (a few per in-flight request).
_ACCEPTED = 1024


def _evidence(old: SignedCheckpoint, new: SignedCheckpoint) -> dict[str, Any]:
    return {
        "old": old.raw,
        "new": new.raw,
        "origin": new.origin,
        "old_size": old.size,
        "new_size": new.size,
        "old_root": old.root.hex(),
        "new_root": new.root.hex(),
    }


class CheckpointTracker:
    """The latest verified checkpoint per log origin, advanced only by proof.

    Thread-safe; one tracker may be shared by several clients of the same
    logs (e.g. a sync and an async client, or mirrors).
    """

    def __init__(self, initial: Mapping[str, SignedCheckpoint] | None = None) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, SignedCheckpoint] = dict(initial or {})
        # Tree heads already proven part of the trusted history: the head only
        # moves by proof, so each stays consistent with every later head.
        self._accepted: LRUCache[tuple[str, int, bytes], None] = LRUCache(maxsize=_ACCEPTED)
        for cp in self._latest.values():
            self._remember(cp)

    def latest(self, origin: str) -> SignedCheckpoint | None:
        """The latest verified checkpoint for ``origin``, if any."""
        with self._lock:
            return self._latest.get(origin)

    def origins(self) -> list[str]:
        """Every origin seen."""
        with self._lock:
            return list(self._latest)

    def snapshot(self) -> dict[str, int]:
        """Sizes known now, per origin; a flow takes one before it sends requests."""
        with self._lock:
            return {o: cp.size for o, cp in self._latest.items()}

    def accepted(self, cp: SignedCheckpoint) -> bool:
        """Whether ``cp``'s tree head (origin, size, root) was accepted before."""
        with self._lock:
            return (cp.origin, cp.size, cp.root) in self._accepted

    def _remember(self, cp: SignedCheckpoint) -> None:
        key = (cp.origin, cp.size, cp.root)
        with self._lock:
            self._accepted[key] = None

    def _advance(self, old: SignedCheckpoint | None, new: SignedCheckpoint) -> bool:
        """Replace ``old`` by ``new`` if nobody moved the head meanwhile."""
        with self._lock:
            if self._latest.get(new.origin) is not old:
                return False
            self._latest[new.origin] = new
        self._remember(new)
        return True

    def observe(
        self,
        new: SignedCheckpoint,
        proof: ProofFlow,
        *,
        baseline: Mapping[str, int] | None = None,
        refuse_stale: bool = True,
    ) -> Flow[None]:
        """A flow that accepts ``new`` or raises :class:`DivergenceError`.

        Args:
            new: a checkpoint whose signature already verified.
            proof: fetches/builds the consistency proof between two checkpoints.
            baseline: :meth:`snapshot` taken before the request that produced
                ``new`` was sent. A checkpoint smaller than that is a rollback;
                one smaller than a head that advanced while the request was in
                flight is merely older, and is checked for consistency instead.
            refuse_stale: treat a checkpoint older than the baseline as divergence.
        """
        floor = (baseline or {}).get(new.origin, 0)
        first = True
        while True:
            old = self.latest(new.origin)
            if old is None:
                if self._advance(None, new):
                    return
                continue
            if new.size == old.size:
                if new.root != old.root:
                    raise DivergenceError(
                        f"log {new.origin!r} signed two different roots for size {new.size}",
                        **_evidence(old, new),
                    )
                return
            if new.size < old.size:
                if refuse_stale and first and new.size < floor:
                    raise DivergenceError(
                        f"log {new.origin!r} rolled back from size {old.size} to {new.size}",
                        **_evidence(old, new),
                    )
                hashes = yield from proof(new, old)
                self._verify(new, old, hashes, older_first=True)
                return
            hashes = yield from proof(old, new)
            self._verify(old, new, hashes, older_first=False)
            if self._advance(old, new):
                return
            first = False  # the head moved while we proved; check against it too

    def observe_many(
        self,
        items: Sequence[tuple[SignedCheckpoint, int]],
        proofs: ProofsFlow,
        *,
        refuse_stale: bool = True,
    ) -> Flow[list[DivergenceError | None]]:
        """A flow that accepts many checkpoints at once; per item, None or its error.

        Per origin, the target is the largest of the trusted head and the new
        checkpoints. The head must be consistent with the target (else every
        checkpoint equal to the target is refused and the next largest is
        tried); every other checkpoint must be consistent with the target, or
        equal to it. All proofs are to the target's size, so a v2 client builds
        them from one set of tiles. The target then becomes the head. Every
        check of :meth:`observe` still runs on every item.

        Args:
            items: ``(checkpoint, floor)`` pairs: a checkpoint whose signature
                verified, and the size its origin had in :meth:`snapshot` taken
                before the request that produced it (0 if none).
            proofs: builds consistency proofs from older sizes to one size.
            refuse_stale: a checkpoint smaller than its floor is a rollback.
        """
        out: list[DivergenceError | None] = [None] * len(items)
        by_origin: dict[str, list[int]] = {}
        for i, (cp, _) in enumerate(items):
            by_origin.setdefault(cp.origin, []).append(i)
        for origin, members in by_origin.items():
            yield from self._observe_origin(origin, items, members, out, proofs, refuse_stale)
        return out

    def _observe_origin(
        self,
        origin: str,
        items: Sequence[tuple[SignedCheckpoint, int]],
        members: list[int],
        out: list[DivergenceError | None],
        proofs: ProofsFlow,
        refuse_stale: bool,
    ) -> Flow[None]:
        undecided = list(members)
        head = self.latest(origin)
        if head is not None and refuse_stale:
            for i in list(undecided):
                cp, floor = items[i]
                if cp.size < floor:  # the floor was a trusted size: the head is at least that
                    out[i] = DivergenceError(
                        f"log {origin!r} rolled back from size {head.size} to {cp.size}",
                        **_evidence(head, cp),
                    )
                    undecided.remove(i)
        while True:
            head = self.latest(origin)
            undecided = [i for i in undecided if not self.accepted(items[i][0])]
            if not undecided:
                return
            heads: dict[tuple[int, bytes], SignedCheckpoint] = {}
            for i in undecided:
                heads.setdefault((items[i][0].size, items[i][0].root), items[i][0])
            target = max(heads.values(), key=lambda c: c.size)
            if head is not None and head.size >= target.size:
                target = head
            older = {c.size for c in heads.values() if 0 < c.size < target.size}
            if head is not None and 0 < head.size < target.size:
                older.add(head.size)
            sizes = sorted(older)
            built = (yield from proofs(target.size, sizes)) if sizes else []
            hashes = dict(zip(sizes, built, strict=True))
            if head is not None and target is not head:
                refused = self._check(head, target, hashes.get(head.size, []), older_first=False)
                if refused is not None:
                    # The trusted head does not extend to this target: refuse every
                    # item that is this tree head, and try the next largest.
                    for i in list(undecided):
                        if (items[i][0].size, items[i][0].root) == (target.size, target.root):
                            out[i] = refused
                            undecided.remove(i)
                    continue
            for i in undecided:
                cp = items[i][0]
                if cp.size == target.size:
                    if cp.root != target.root:
                        out[i] = DivergenceError(
                            f"log {origin!r} signed two different roots for size {cp.size}",
                            **_evidence(target, cp),
                        )
                else:
                    out[i] = self._check(cp, target, hashes.get(cp.size, []), older_first=True)
            undecided = [i for i in undecided if out[i] is None]
            if target is not head and not self._advance(head, target):
                continue  # another client moved the head while we proved: check against it
            for i in undecided:
                self._remember(items[i][0])
            self._remember(target)
            return

    @classmethod
    def _check(
        cls,
        older: SignedCheckpoint,
        newer: SignedCheckpoint,
        hashes: list[bytes],
        *,
        older_first: bool,
    ) -> DivergenceError | None:
        try:
            cls._verify(older, newer, hashes, older_first=older_first)
        except DivergenceError as exc:
            return exc
        return None

    @staticmethod
    def _verify(
        older: SignedCheckpoint, newer: SignedCheckpoint, hashes: list[bytes], *, older_first: bool
    ) -> None:
        old, new = (older, newer) if not older_first else (newer, older)
        if older.size == 0:
            # Every tree extends the empty one (RFC 9162 §2.1.4); only its root is checked.
            if older.root == merkle.EMPTY_ROOT:
                return
            raise DivergenceError(
                f"log {newer.origin!r}: a size-0 checkpoint with a non-empty root",
                **_evidence(old, new),
            )
        try:
            merkle.verify_consistency(older.size, newer.size, older.root, newer.root, hashes)
        except (ConsistencyError, MalformedError) as exc:
            raise DivergenceError(
                f"log {newer.origin!r}: checkpoints of size {older.size} and {newer.size} "
                f"are not consistent ({exc})",
                proof=[h.hex() for h in hashes],
                **_evidence(old, new),
            ) from exc
