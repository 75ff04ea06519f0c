"""The whole rekorkit exception tree.

Everything the library raises on purpose derives from :class:`RekorKitError`.
Verification failures carry their evidence as attributes; malformed input is
also a :class:`ValueError` so callers that already catch that keep working;
HTTP problems are :class:`RekorAPIError` with the status and Rekor's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CheckpointError",
    "CircuitOpenError",
    "ConflictError",
    "ConsistencyError",
    "DivergenceError",
    "InclusionError",
    "MalformedError",
    "NotFoundError",
    "RangeError",
    "RateLimitedError",
    "RekorAPIError",
    "RekorKitError",
    "RequestTimeoutError",
    "RetryExhaustedError",
    "SignatureError",
    "StoreError",
    "TileError",
    "TransportError",
    "UnavailableError",
    "VerificationError",
    "WriterConflictError",
]


class RekorKitError(Exception):
    """Root of every error rekorkit raises on purpose."""


class MalformedError(RekorKitError, ValueError):
    """Input that does not parse: a tile, note, proof, JSON body or path.

    Attributes:
        what: the kind of input (``"entry bundle"``, ``"tile path"``, ...).
        where: a location inside it (byte offset, index, field), when known.
    """

    def __init__(self, message: str, *, what: str | None = None, where: str | None = None):
        super().__init__(message)
        self.what = what
        self.where = where


class RangeError(RekorKitError, ValueError):
    """A requested index range does not fit the log (a usage error, not a failed check)."""


class VerificationError(RekorKitError):
    """Something did not verify. Subclasses carry the evidence.

    Attributes:
        evidence: a dict of the values involved (indices, sizes, hashes, checkpoints).
    """

    def __init__(self, message: str, **evidence: Any):
        super().__init__(message)
        self.evidence: dict[str, Any] = evidence


class InclusionError(VerificationError):
    """An inclusion proof, or a leaf hash against a tile, did not verify."""


class ConsistencyError(VerificationError):
    """A consistency proof between two tree heads did not verify."""


class SignatureError(VerificationError):
    """A signature (note, checkpoint, SET, DSSE, cosignature) did not verify."""


class CheckpointError(VerificationError):
    """A checkpoint was well-formed but unacceptable (origin, size, root, policy)."""


class TileError(VerificationError):
    """A tile or entry bundle does not hash up to what it must."""


class DivergenceError(VerificationError):
    """The log showed two views that cannot both be true (rollback, fork, rewrite).

    The evidence holds both checkpoints (``old`` and ``new``).
    """


class StoreError(RekorKitError):
    """A storage backend failed or holds data that contradicts itself."""


class WriterConflictError(StoreError):
    """Another writer changed a shared store first; this write was refused, not merged.

    Raised when a compare-and-swap on an origin's latest checkpoint fails
    (this writer proved consistency from a size another writer has moved on
    from) or when a range this writer stores was stored by another writer.

    Attributes:
        evidence: what each writer saw (origin, expected and found sizes, the
            new checkpoint's note; or the range and the stored one).
    """

    def __init__(self, message: str, **evidence: Any):
        super().__init__(message)
        self.evidence = evidence


class RekorAPIError(RekorKitError):
    """An HTTP exchange with a log failed.

    Attributes:
        status: the HTTP status, or ``None`` when no response arrived.
        code: Rekor's error code from the body (v1 HTTP-like, v2 gRPC), if any.
        message: Rekor's message, or a description of what went wrong.
        url: the URL requested, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.url = url
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{status}{self.message}{where}"


class NotFoundError(RekorAPIError):
    """404: no such entry, tile or resource."""


class ConflictError(RekorAPIError):
    """409: an equivalent entry exists. ``location`` or ``log_index`` names it."""

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        log_index: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(message, **kwargs)
        self.location = location
        self.log_index = log_index


class RateLimitedError(RekorAPIError):
    """429: the log or its edge asks us to slow down (see ``retry_after``)."""


class UnavailableError(RekorAPIError):
    """5xx or pushback: the log could not serve the request now."""


class RequestTimeoutError(RekorAPIError):
    """No complete response within the timeout."""


class TransportError(RekorAPIError):
    """The connection failed, dropped, or delivered a truncated body."""


class CircuitOpenError(RekorAPIError):
    """The circuit breaker for this backend is open; the request was not sent."""


class RetryExhaustedError(RekorAPIError):
    """Every attempt failed. ``attempts`` holds each error, the last one first."""

    def __init__(self, message: str, attempts: Sequence[BaseException], **kwargs: Any):
        last = attempts[0] if attempts else None
        if isinstance(last, RekorAPIError):
            kwargs.setdefault("status", last.status)
            kwargs.setdefault("code", last.code)
            kwargs.setdefault("url", last.url)
        super().__init__(message, **kwargs)
        self.attempts: tuple[BaseException, ...] = tuple(attempts)
