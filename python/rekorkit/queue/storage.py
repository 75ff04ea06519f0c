"""The storage protocol a submission queue runs on.

Small on purpose, so a shared backend (PostgreSQL, with ``SELECT ... FOR
UPDATE SKIP LOCKED`` for claims) slots in beside the embedded SQLite one
(:mod:`rekorkit.queue.sqlite`). Every method is one transaction: when it
returns, what it wrote is durable.

Contract:

* :meth:`QueueStorage.enqueue_many` is idempotent by ``(backend, leaf hash)``:
  an entry already queued for that backend keeps its row and its ID.
* :meth:`QueueStorage.claim` leases due items (pending and due, or leased with
  an expired lease) to one caller with a fresh token per item; two callers
  never hold a live lease on the same item.
* :meth:`QueueStorage.record` applies outcomes only where the caller's token is
  still the item's lease token, so a worker that outlived its lease cannot
  overwrite the newer claim; it returns which outcomes were applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rekorkit.queue.model import Claim, Outcome, QueueBackend, QueueCounts, State, Submission

__all__ = ["NewSubmission", "QueueStorage"]


@dataclass(frozen=True, slots=True)
class NewSubmission:
    """A validated entry ready to store.

    Attributes:
        id: its submission ID.
        backend: the log it goes to.
        leaf_hash: the leaf hash of its canonical body.
        kind: the entry kind.
        request: the request body (JSON bytes).
    """

    id: str
    backend: QueueBackend
    leaf_hash: bytes
    kind: str
    request: bytes


@runtime_checkable
class QueueStorage(Protocol):
    """Durable storage for submissions (see the module docstring for the contract)."""

    def enqueue_many(self, items: Sequence[NewSubmission], *, now: float) -> list[str]:
        """Store the items not yet queued, due at ``now``; return every item's ID, in order."""
        ...

    def claim(
        self,
        *,
        limit: int,
        lease: float,
        now: float,
        backend: str | None = None,
        log_size_hint: int | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` due items (of one backend, if given) for ``lease`` seconds.

        ``log_size_hint`` is stored on items claimed for the first time.
        """
        ...

    def record(self, outcomes: Sequence[tuple[Claim, Outcome]], *, now: float) -> list[bool]:
        """Apply outcomes; ``False`` where the lease was lost (the outcome is dropped)."""
        ...

    def release(self, claims: Sequence[Claim]) -> None:
        """Give leases back unused: the items are due again at once, no attempt counted."""
        ...

    def get(self, submission_id: str) -> Submission | None:
        """One submission by ID."""
        ...

    def counts(self, *, now: float) -> QueueCounts:
        """Counts per state, what is due, and the last error."""
        ...

    def requeue(self, ids: Sequence[str] = (), *, dead: bool = False, now: float) -> int:
        """Make dead (or pending) items due now with a fresh attempt budget; return how many."""
        ...

    def backends(self) -> list[QueueBackend]:
        """Every backend that has submissions."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def list(
        self, *, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> list[Submission]:
        """Submissions, oldest first, optionally of one state."""
        ...
