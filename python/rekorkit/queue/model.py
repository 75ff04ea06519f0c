"""The queue's value types: states, backends, attempts, submissions and outcomes.

A submission moves ``pending -> leased -> done`` on the happy path. A failed
attempt puts it back to ``pending`` with a later ``next_attempt_at``; a
request the log will never take, or one out of attempts, goes to ``dead``
with a typed :class:`DeadReason` and every attempt's error. A ``leased`` item
whose lease expired (its worker died) is due again.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Attempt",
    "Claim",
    "Dead",
    "DeadReason",
    "Done",
    "Outcome",
    "QueueBackend",
    "QueueCounts",
    "Retry",
    "State",
    "Submission",
    "submission_from_row",
    "submission_id",
]


class State(enum.StrEnum):
    """Where a submission is in its life."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"


class DeadReason(enum.StrEnum):
    """Why a submission was given up on (its error history says the rest)."""

    REJECTED = "rejected"
    """The log refused the request for good (400, 422, or another final 4xx)."""
    EXHAUSTED = "exhausted"
    """Every allowed attempt failed transiently."""
    UNVERIFIED = "unverified"
    """The log answered, but its answer did not verify (the evidence is in the history)."""


@dataclass(frozen=True, slots=True)
class QueueBackend:
    """A log the queue submits to, with the keys its answers are verified against.

    Attributes:
        url: the log's base URL (v1 API root or v2 write URL; tiles under it for v2).
        api_version: 1 (Rekor REST) or 2 (rekor-tiles).
        public_key: the log key as PEM: v1 SETs and checkpoints, or the v2 checkpoint key.
        vkey: the checkpoint note verifier key, when its name is not the URL host.
    """

    url: str
    api_version: int = 1
    public_key: str | None = None
    vkey: str | None = None

    def __post_init__(self) -> None:
        if self.api_version not in (1, 2):
            raise ValueError(f"api_version must be 1 or 2, got {self.api_version}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"backend URL must be http(s): {self.url!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def key(self) -> str:
        """The backend's name in the queue: ``v<api>:<url>``."""
        return f"v{self.api_version}:{self.url}"


def submission_id(backend_key: str, leaf_hash: bytes) -> str:
    """The submission ID: 32 hex of SHA-256 over the backend key and the leaf hash.

    Derived, not drawn, so the same entry for the same log always has the same
    ID, in every process and every queue backend.
    """
    return hashlib.sha256(backend_key.encode() + b"\x00" + leaf_hash).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt, as recorded in a submission's error history.

    Attributes:
        at: Unix time the attempt ended.
        error: the error's class name (``RateLimitedError``, ``RequestTimeoutError``...).
        message: the error text.
        status: the HTTP status, when there was a response.
        retry_after: the server's ``Retry-After`` in seconds, if it sent one.
    """

    at: float
    error: str
    message: str
    status: int | None = None
    retry_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The attempt as a JSON object."""
        return {
            "at": self.at,
            "error": self.error,
            "message": self.message,
            "status": self.status,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Attempt:
        """Read :meth:`to_json` output back."""
        return cls(
            at=float(obj["at"]),
            error=str(obj["error"]),
            message=str(obj["message"]),
            status=obj.get("status"),
            retry_after=obj.get("retry_after"),
        )


@dataclass(frozen=True, slots=True)
class Submission:
    """One queued entry and everything known about it.

    Attributes:
        id: the submission ID (:func:`submission_id`).
        backend: the backend key (:attr:`QueueBackend.key`).
        leaf_hash: the RFC 6962 leaf hash of the canonical body the log must store
            (for v1 also the entry UUID, in hex).
        kind: the entry kind (``dsse``, ``hashedrekord``, ``intoto``).
        request: the request body as sent to the log (JSON bytes).
        state: where it is.
        attempts: failed attempts so far.
        next_attempt_at: Unix time it is due (pending items).
        created_at, updated_at: Unix times.
        errors: every failed attempt, oldest first.
        receipt: the verified log entry as the log returned it (v1 ``{uuid: {...}}``,
            v2 ``TransparencyLogEntry`` JSON), once done.
        log_index: the entry's index in the log, once done.
        dead_reason: why it was given up on, when dead.
    """

    id: str
    backend: str
    leaf_hash: bytes
    kind: str
    request: bytes
    state: State
    attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float
    errors: tuple[Attempt, ...] = ()
    receipt: dict[str, Any] | None = None
    log_index: int | None = None
    dead_reason: DeadReason | None = None

    @property
    def uuid(self) -> str:
        """The hex leaf hash: the Rekor v1 entry UUID."""
        return self.leaf_hash.hex()


def submission_from_row(row: Sequence[Any]) -> Submission:
    """A :class:`Submission` from a stored row, for every queue storage.

    The row's columns, in order: ``id, backend, leaf_hash, kind, request,
    state, attempts, next_attempt_at, created_at, updated_at, errors`` (JSON
    text of the attempts), ``receipt`` (JSON text or ``None``), ``log_index,
    dead_reason``; further columns are ignored.
    """
    return Submission(
        id=row[0],
        backend=row[1],
        leaf_hash=bytes(row[2]),
        kind=row[3],
        request=bytes(row[4]),
        state=State(row[5]),
        attempts=row[6],
        next_attempt_at=row[7],
        created_at=row[8],
        updated_at=row[9],
        errors=tuple(Attempt.from_json(a) for a in json.loads(row[10])),
        receipt=json.loads(row[11]) if row[11] is not None else None,
        log_index=row[12],
        dead_reason=DeadReason(row[13]) if row[13] is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A submission leased to one worker until ``lease_expires``.

    Only the holder of ``token`` can record the outcome; a worker whose lease
    expired and was claimed again finds its token refused.

    Attributes:
        submission: the submission as claimed.
        token: the lease token.
        lease_expires: Unix time the lease ends.
        claims: how many times it has been claimed, this one included (more than
            one: an earlier attempt may have landed, so look it up first).
        log_size_hint: the log size known when it was first claimed: it cannot
            have landed below this index.
    """

    submission: Submission
    token: str
    lease_expires: float
    claims: int = 1
    log_size_hint: int | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """Logged and verified: the receipt as the log returned it.

    ``resolved`` is true when the entry was found already in the log by lookup
    (a 409, or an earlier write that landed) rather than written by this attempt.
    """

    receipt: dict[str, Any]
    log_index: int
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """Failed transiently: try again at ``at`` (Unix time)."""

    attempt: Attempt
    at: float


@dataclass(frozen=True, slots=True)
class Dead:
    """Given up on: the reason, and the attempt that decided it."""

    reason: DeadReason
    attempt: Attempt


Outcome = Done | Retry | Dead
"""What a worker records for a claim."""


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The queue at a glance (``rekorkit queue status``).

    Attributes:
        by_state: submissions per state (every state present, zero or not).
        due: pending or lease-expired submissions due now.
        oldest_due_at: ``next_attempt_at`` of the longest-waiting due item.
        next_due_at: when the next pending item falls due (None if none pending).
        last_error: the most recent recorded error (attempt and submission ID).
    """

    by_state: dict[str, int] = field(default_factory=dict)
    due: int = 0
    oldest_due_at: float | None = None
    next_due_at: float | None = None
    last_error: tuple[str, Attempt] | None = None

    @property
    def total(self) -> int:
        """Every submission in the queue."""
        return sum(self.by_state.values())

    @property
    def open(self) -> int:
        """Submissions not yet done or dead (pending or leased)."""
        return self.by_state.get(State.PENDING, 0) + self.by_state.get(State.LEASED, 0)

    def to_json(self) -> dict[str, Any]:
        """The counts as a JSON object (``queue status --json``, ``/healthz``)."""
        last = self.last_error
        return {
            "states": dict(self.by_state),
            "due": self.due,
            "oldest_due_at": self.oldest_due_at,
            "next_due_at": self.next_due_at,
            "last_error": {"id": last[0], **last[1].to_json()} if last else None,
        }
