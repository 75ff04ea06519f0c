"""The durable submission queue: validate, hash and store entries before they are logged.

``enqueue`` does locally what the log will do on write (the Rekor OpenAPI, ProposedEntry for
v1 ProposedEntries, §4.1 for v2 requests): parse the request, check every
signature against the key or certificate it carries, and build the canonical
body. The RFC 6962 leaf hash of that body (RFC 9162 §2.1.1; for v1 also the
entry UUID) is known before anything is sent, so a duplicate is recognised
in the queue and an ambiguous write is found in the log afterwards. The
entry is committed to disk before ``enqueue`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rekorkit import merkle
from rekorkit.errors import NotFoundError
from rekorkit.queue.model import QueueBackend, QueueCounts, State, Submission, submission_id
from rekorkit.queue.sqlite import SQLiteQueueStorage
from rekorkit.queue.storage import NewSubmission, QueueStorage
from rekorkit.queue.validation import Request, validate_requests
from rekorkit.store.open import is_postgres_url

__all__ = ["DEFAULT_MAX_REQUEST", "SubmissionQueue", "open_queue_storage"]

# Rekor v1's default maximum request body (the Rekor OpenAPI, Error: 413 above it),
# the same limit the local log applies.
DEFAULT_MAX_REQUEST = 4 * 1024 * 1024


def open_queue_storage(location: str | Path) -> QueueStorage:
    """The queue storage at ``location``: PostgreSQL for a ``postgresql://`` URL
    (workers on many hosts share it), else a SQLite file (created if missing).

    Raises:
        StoreError: the storage cannot be opened, or holds an unsupported schema.
    """
    if is_postgres_url(location):
        from rekorkit.queue.postgres import PostgresQueueStorage

        return PostgresQueueStorage(str(location))
    return SQLiteQueueStorage(location)


class SubmissionQueue:
    """Entries waiting to be logged, durable across crashes.

    Args:
        storage: a queue file path (SQLite, created if missing), a
            ``postgresql://`` URL (a queue shared by workers in many processes)
            or a :class:`~rekorkit.queue.storage.QueueStorage`.
        max_request: the largest request body accepted, in bytes.
        clock: Unix time source (injectable for tests).
        validation_workers: processes that validate a large batch (default: one
            per usable CPU; 1: in the calling process). See
            :mod:`rekorkit.queue.validation`.

    Raises:
        StoreError: the queue file is corrupt, not a queue, or locked.
    """

    def __init__(
        self,
        storage: str | Path | QueueStorage,
        *,
        max_request: int = DEFAULT_MAX_REQUEST,
        clock: Callable[[], float] = time.time,
        validation_workers: int | None = None,
    ) -> None:
        self.storage: QueueStorage = (
            open_queue_storage(storage) if isinstance(storage, str | Path) else storage
        )
        self.max_request = max_request
        self.clock = clock
        self.validation_workers = validation_workers

    def close(self) -> None:
        """Close the storage."""
        self.storage.close()

    def __enter__(self) -> SubmissionQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, requests: Sequence[Request], *, backend: QueueBackend) -> list[NewSubmission]:
        """Validate requests and compute their leaf hashes and IDs, without storing them.

        Raises:
            MalformedError: a request is not a valid entry request (``where`` names
                the request's position and the field).
            SignatureError: a signature does not verify (evidence: ``index``, ``field``).
        """
        if not requests:
            return []
        valid = validate_requests(
            requests,
            api_version=backend.api_version,
            max_size=self.max_request,
            workers=self.validation_workers,
        )
        bodies = [body for body, _, _ in valid]
        leaves = merkle.hash_leaves(bodies)
        out = []
        for leaf_row, (_, kind, raw) in zip(leaves, valid, strict=True):
            leaf = leaf_row.tobytes()
            out.append(
                NewSubmission(
                    id=submission_id(backend.key, leaf),
                    backend=backend,
                    leaf_hash=leaf,
                    kind=kind,
                    request=raw,
                )
            )
        return out

    def enqueue(self, request: Request, *, backend: QueueBackend) -> str:
        """Validate one request and store it durably; return its submission ID.

        The same entry for the same backend always gets the same ID, and is
        stored once.

        Raises:
            MalformedError, SignatureError: the request was refused; nothing was queued.
            StoreError: the queue could not be written.
        """
        [sid] = self.enqueue_many([request], backend=backend)
        return sid

    def enqueue_many(self, requests: Sequence[Request], *, backend: QueueBackend) -> list[str]:
        """Validate every request, then store them all in one transaction.

        One bad request refuses the whole batch (its error names its position).
        """
        items = self.prepare(requests, backend=backend)
        return self.storage.enqueue_many(items, now=self.clock())

    def get(self, submission_id: str) -> Submission:
        """The submission with this ID.

        Raises:
            NotFoundError: no such submission.
        """
        sub = self.storage.get(submission_id)
        if sub is None:
            raise NotFoundError(f"no submission {submission_id!r} in the queue")
        return sub

    def list(
        self, *, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> list[Submission]:
        """Submissions, oldest first, optionally of one state."""
        return self.storage.list(state=state, limit=limit, offset=offset)

    def status(self) -> QueueCounts:
        """Counts per state, oldest due item and the last error."""
        return self.storage.counts(now=self.clock())

    def retry(self, ids: Sequence[str] = (), *, dead: bool = False) -> int:
        """Put dead submissions (these IDs, or every dead one) back in line; return how many."""
        return self.storage.requeue(ids, dead=dead, now=self.clock())
