"""Retries, timeouts, circuit breaking and failover for log clients.

Rekor's users asked for exactly these (Rekor's issue tracker: sigstore-python #1148
and #1448, cosign #2198, rekor #2640): exponential backoff with jitter, 429
honouring ``Retry-After`` even when the edge answers with HTML, no retries on
other 4xx, a short connect timeout with a long read timeout for v2 writes, and
the last underlying error shown when the client gives up.

Everything that waits or reads the time takes an injectable clock and sleep,
so tests run the whole state machine without sleeping.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from rekorkit.errors import (
    CircuitOpenError,
    RateLimitedError,
    RekorAPIError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    UnavailableError,
)

__all__ = [
    "CircuitBreaker",
    "Failover",
    "RetryPolicy",
    "Timeouts",
    "is_retryable",
]

T = TypeVar("T")

# Statuses that say "try again later": 408 and 429 from edges, 5xx from the log
# or its load balancer (the Rekor OpenAPI, Error, §4.2). 501 is "API disabled" and is
# permanent, so it is not here.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt is worth repeating (transient by nature)."""
    if isinstance(exc, TransportError | RequestTimeoutError | CircuitOpenError):
        return True
    if isinstance(exc, RateLimitedError | UnavailableError):
        return True
    if isinstance(exc, RekorAPIError) and exc.status is not None:
        return exc.status in RETRYABLE_STATUSES
    return False


def _trips_breaker(exc: BaseException) -> bool:
    # A 4xx other than 408/429 proves the backend is up and answering; only
    # transport failures and "try later" answers count against its health.
    return is_retryable(exc) and not isinstance(exc, CircuitOpenError)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Timeouts as an object: a short connect limit, a separate (long) read limit,
    and a deadline for the whole exchange.

    The per-operation limits (``connect``, ``read``, ``write``, ``pool``) bound
    each wait as httpx's do; ``total`` bounds one attempt from the first byte
    sent to the last byte read, so a log that drips its answer one byte at a
    time cannot hold a client forever. Each retry gets a fresh deadline.

    Attributes:
        connect: seconds to establish a connection.
        read: seconds to wait between bytes of the response.
        write: seconds to send the request.
        pool: seconds to wait for a free connection from the pool.
        total: seconds for one whole attempt (None: no deadline).
    """

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 30.0
    total: float | None = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool", "total"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"timeout {name} must be > 0 seconds, got {value!r}")

    @classmethod
    def of(cls, value: float | Timeouts | None, default: Timeouts | None = None) -> Timeouts:
        """``value`` as :class:`Timeouts`: a number of seconds is the per-request
        deadline, every other limit no longer than it; None is ``default``."""
        if value is None:
            return default if default is not None else cls()
        if isinstance(value, Timeouts):
            return value
        seconds = float(value)
        return cls(
            connect=min(5.0, seconds), read=seconds, write=seconds, pool=seconds, total=seconds
        )

    @classmethod
    def for_v2_writes(cls) -> Timeouts:
        """Timeouts for Rekor v2 ``POST /api/v2/log/entries``.

        The call blocks until a checkpoint including the entry is published,
        and the server's own limit is 20 s (the rekor-tiles API), so the read
        timeout must be at least that.
        """
        return cls(connect=5.0, read=60.0, write=30.0, pool=60.0, total=90.0)

    def to_httpx(self) -> httpx.Timeout:
        """The equivalent :class:`httpx.Timeout` (httpx has no whole-exchange deadline)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, an attempt cap and a total time budget.

    Attempt ``n`` (0-based, counting retries) waits a uniform random time in
    ``[0, min(max_delay, base_delay * multiplier**n)]``; a server's
    ``Retry-After`` raises that wait to at least what it asked for. The policy
    gives up when ``max_attempts`` is reached or the next wait would overrun
    ``total_budget`` seconds, raising :class:`RetryExhaustedError` with every
    attempt's error, the last one first. Non-retryable errors propagate as is.

    Attributes:
        max_attempts: total attempts including the first (>= 1).
        base_delay: the first backoff cap, in seconds.
        max_delay: the largest backoff cap, in seconds.
        multiplier: growth of the cap per attempt.
        total_budget: seconds from the first attempt after which no new attempt starts.
        max_retry_after: the longest ``Retry-After`` honoured; longer ones give up.
        clock: monotonic clock (injectable for tests).
        sleep: blocking sleep (injectable for tests).
        async_sleep: awaitable sleep (injectable for tests).
        rng: uniform [0, 1) source for jitter (injectable for tests).
    """

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 20.0
    multiplier: float = 2.0
    total_budget: float = 120.0
    max_retry_after: float = 300.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: Callable[[], float] = field(default_factory=lambda: random.random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.total_budget < 0:
            raise ValueError("delays and budget must be >= 0")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)

    def backoff(self, retry: int, exc: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based) after ``exc``."""
        cap = min(self.max_delay, self.base_delay * (self.multiplier**retry))
        delay = self.rng() * cap
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return delay

    def _next_delay(self, attempts: list[BaseException], started: float) -> float | None:
        """The wait before the next attempt, or None to give up."""
        last = attempts[-1]
        if not is_retryable(last) or len(attempts) >= self.max_attempts:
            return None
        retry_after = getattr(last, "retry_after", None)
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        delay = self.backoff(len(attempts) - 1, last)
        if self.clock() - started + delay > self.total_budget:
            return None
        return delay

    def _give_up(self, attempts: list[BaseException]) -> BaseException:
        last = attempts[-1]
        if len(attempts) == 1 and not is_retryable(last):
            return last
        if not is_retryable(last):
            # A permanent error after transient ones: that error is the answer,
            # but keep the history on it for diagnosis.
            last.add_note(f"after {len(attempts) - 1} failed attempt(s): {attempts[-2]}")
            return last
        newest_first = list(reversed(attempts))
        return RetryExhaustedError(
            f"giving up after {len(attempts)} attempt(s); last error: {last}",
            newest_first,
        )

    def _after_failure(
        self, exc: RekorAPIError | CircuitOpenError, attempts: list[BaseException], started: float
    ) -> float:
        """Record a failed attempt; the delay before the next, or raise what ends the call."""
        attempts.append(exc)
        delay = self._next_delay(attempts, started)
        if delay is None:
            err = self._give_up(attempts)
            if err is exc:
                raise exc
            raise err from exc
        return delay

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it succeeds or the policy gives up."""
        attempts: list[BaseException] = []
        started = self.clock()
        while True:
            try:
                return fn()
            except (RekorAPIError, CircuitOpenError) as exc:
                delay = self._after_failure(exc, attempts, started)
            self.sleep(delay)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` until it succeeds or the policy gives up."""
        attempts: list[BaseException] = []
        started = self.clock()
        while True:
            try:
                return await fn()
            except (RekorAPIError, CircuitOpenError) as exc:
                delay = self._after_failure(exc, attempts, started)
            await self.async_sleep(delay)


class CircuitBreaker:
    """Stop sending to a backend after consecutive failures; probe it later.

    Closed: requests flow; ``failure_threshold`` consecutive failures open it.
    Open: requests are refused with :class:`CircuitOpenError` until
    ``reset_timeout`` seconds pass. Half-open: exactly one probe request is let
    through; its success closes the breaker, its failure opens it again.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __init__(
        self,
        name: str = "",
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = self.CLOSED
        self._probe_out = False

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` as of now."""
        with self._lock:
            self._tick()
            return self._state

    def _tick(self) -> None:
        if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._state = self.HALF_OPEN
            self._probe_out = False

    def allows(self) -> bool:
        """Whether a request could be sent now (without reserving the probe)."""
        with self._lock:
            self._tick()
            if self._state == self.CLOSED:
                return True
            return self._state == self.HALF_OPEN and not self._probe_out

    def acquire(self) -> None:
        """Reserve the right to send one request, or raise :class:`CircuitOpenError`."""
        with self._lock:
            self._tick()
            if self._state == self.CLOSED:
                return
            if self._state == self.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return
            wait = max(0.0, self.reset_timeout - (self._clock() - self._opened_at))
            raise CircuitOpenError(
                f"circuit open for backend {self.name or '?'} after "
                f"{self._failures} consecutive failure(s)",
                url=self.name or None,
                retry_after=wait if self._state == self.OPEN else None,
            )

    def record_success(self) -> None:
        """A request completed: close the breaker."""
        with self._lock:
            self._failures = 0
            self._state = self.CLOSED
            self._probe_out = False

    def record_failure(self) -> None:
        """A request failed transiently: count it, open when over the threshold."""
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = self.OPEN
                self._opened_at = self._clock()
                self._probe_out = False

    def record(self, exc: BaseException | None) -> None:
        """Record the outcome of an acquired request (``None`` = success)."""
        if exc is None or not _trips_breaker(exc):
            self.record_success()
        else:
            self.record_failure()


class Failover:
    """An ordered list of equivalent backends, each behind its own breaker.

    :meth:`choose` returns the first backend whose breaker lets a request
    through, preferring one other than the backend that failed last, so a
    retry after a failure goes to the next backend in line.
    """

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_urls:
            raise ValueError("Failover needs at least one backend URL")
        self.base_urls: tuple[str, ...] = tuple(base_urls)
        self.breakers: dict[str, CircuitBreaker] = {
            url: CircuitBreaker(
                url,
                failure_threshold=failure_threshold,
                reset_timeout=reset_timeout,
                clock=clock,
            )
            for url in self.base_urls
        }
        self._last_failed: str | None = None

    def choose(self) -> str:
        """Pick a backend and reserve a request on its breaker.

        Raises:
            CircuitOpenError: every backend's breaker is open.
        """
        candidates = [u for u in self.base_urls if self.breakers[u].allows()]
        if len(candidates) > 1 and self._last_failed in candidates:
            candidates.remove(self._last_failed)
        for url in candidates:
            try:
                self.breakers[url].acquire()
            except CircuitOpenError:
                continue  # lost a race for the half-open probe
            return url
        waits = [(b.reset_timeout - (b._clock() - b._opened_at)) for b in self.breakers.values()]
        raise CircuitOpenError(
            f"all {len(self.base_urls)} backend(s) have open circuits",
            url=self.base_urls[0],
            retry_after=max(0.0, min(waits)),
        )

    def record(self, url: str, exc: BaseException | None) -> None:
        """Record the outcome of a request sent to ``url``."""
        self.breakers[url].record(exc)
        if exc is not None and _trips_breaker(exc):
            self._last_failed = url
        elif exc is None:
            self._last_failed = None
