"""The client's memory of each log: the latest verified checkpoint per origin.

Every checkpoint a client accepts is compared with the latest one it already
trusts for the same origin. A larger one must be proven consistent with it
(a v1 proof from the log, or a v2 proof built from tiles); an equal size must
have an equal root; a smaller one is a rollback. Each failure is a
:class:`DivergenceError` carrying both checkpoints, the raw evidence a
monitor or a witness needs (TLOG.md §3.4, DESIGN "Verify, then trust").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint
from rekorkit.client._flow import Flow
from rekorkit.errors import ConsistencyError, DivergenceError, MalformedError

__all__ = ["CheckpointTracker"]

ProofFlow = Callable[[SignedCheckpoint, SignedCheckpoint], Flow[list[bytes]]]
"""Given (older, newer) checkpoints, a flow returning the consistency proof hashes."""


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

    def _advance(self, old: SignedCheckpoint | None, new: SignedCheckpoint) -> bool:
        """Replace ``old`` by ``new`` if nobody moved the head meanwhile."""
        with self._lock:
            if self._latest.get(new.origin) is not old:
                return False
            self._latest[new.origin] = new
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

    @staticmethod
    def _verify(
        older: SignedCheckpoint, newer: SignedCheckpoint, hashes: list[bytes], *, older_first: bool
    ) -> None:
        old, new = (older, newer) if not older_first else (newer, older)
        if older.size == 0:
            # Every tree extends the empty one (TLOG.md §3.4); only its root is checked.
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
