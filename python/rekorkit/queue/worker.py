"""The retry worker: claim due submissions, log them through the verified clients, record why.

Each claimed item is submitted through :class:`~rekorkit.client.AsyncRekorV1Client`
or :class:`~rekorkit.client.AsyncRekorV2Client`, which verify the answer
(inclusion proof against a signed checkpoint, SET, body) before handing it
back, and which turn a 409 into the existing, verified entry. The clients
make one attempt each (``RetryPolicy.none()``): retries are the queue's, so
each one is persisted with its error and survives a crash. What happens to
an attempt:

* logged: the verified entry is stored as the receipt, the item is done;
* 409, or a write that timed out or dropped and may have landed: the entry is
  looked up (v1 by UUID, v2 by leaf hash in the level-0 tiles from the log
  size known when the item was first claimed, then read back with a verified
  inclusion proof); found means done, with no second entry in the log;
* 429, 5xx, network errors: retried later, exponential backoff with full
  jitter and at least the server's ``Retry-After``;
* 400, 422 and other final 4xx, an answer that does not verify, or attempts
  exhausted: dead letter, with the typed reason and the whole error history.

An item claimed more than once (its worker died, or an attempt failed) is
looked up before it is sent again. A submission runs under a deadline ending
before its lease does, so no two workers ever have it in flight together.
SIGTERM and SIGINT stop claiming; items in flight finish and are recorded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rekorkit import merkle, tiles
from rekorkit.client import AsyncRekorV1Client, AsyncRekorV2Client, Failover, RetryPolicy
from rekorkit.client.resilience import is_retryable
from rekorkit.entries import LogEntry, TransparencyLogEntry
from rekorkit.errors import (
    ConflictError,
    NotFoundError,
    RekorAPIError,
    RekorKitError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    VerificationError,
)
from rekorkit.note import parse_verifier_key
from rekorkit.queue.metrics import QueueMetrics
from rekorkit.queue.model import (
    Attempt,
    Claim,
    Dead,
    DeadReason,
    Done,
    Outcome,
    QueueBackend,
    QueueCounts,
    Retry,
)
from rekorkit.queue.submissions import SubmissionQueue

if TYPE_CHECKING:
    from rekorkit.metrics import MetricsServer

__all__ = ["BackendLimits", "SubmissionWorker", "WorkerReport", "client_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Submitter = AsyncRekorV1Client | AsyncRekorV2Client

# How far back a v2 lookup scans when no log size was recorded at claim time:
# 64 level-0 tiles (c2sp.org/tlog-tiles: 256 hashes each).
_MAX_SCAN_TILES = 64

# Claimed items waiting to be sent, in batches of the in-flight limit: enough that
# an item finishing is replaced at once, while the next claim runs.
_CLAIM_AHEAD = 2

# Seconds an outcome may wait for others to share its transaction.
_RECORD_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class BackendLimits:
    """Per-backend limits.

    Attributes:
        max_in_flight: most submissions in flight to this backend at once.
        max_rate: most submissions started per second (None: no limit).
    """

    max_in_flight: int = 16
    max_rate: float | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.max_rate is not None and self.max_rate <= 0:
            raise ValueError("max_rate must be > 0")


@dataclass(slots=True)
class WorkerReport:
    """What a worker run did.

    Attributes:
        done: items logged (or found logged) and recorded.
        resolved: of those, items found already in the log by lookup (409 or ambiguous write).
        retried: failed attempts scheduled again.
        dead: items sent to the dead letter.
        lost_leases: outcomes dropped because another worker had claimed the item since.
        open: items pending or leased when the run ended (``--once``: 0 after a full drain).
    """

    done: int = 0
    resolved: int = 0
    retried: int = 0
    dead: int = 0
    lost_leases: int = 0
    open: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def client_for(
    backend: QueueBackend,
    *,
    max_concurrency: int = 16,
    breaker_reset: float = 10.0,
    transport: Any = None,
) -> Submitter:
    """A verifying async client for a queue backend, making one attempt per call.

    Its circuit breaker (five consecutive failures open it for ``breaker_reset``
    seconds) is shared by every submission the client makes.
    """
    failover = Failover([backend.url], reset_timeout=breaker_reset)
    verifier = parse_verifier_key(backend.vkey) if backend.vkey else None
    cls: type[Submitter] = AsyncRekorV1Client if backend.api_version == 1 else AsyncRekorV2Client
    return cls(
        backend.url,
        public_key=backend.public_key,
        verifier=verifier,
        retry=RetryPolicy.none(),
        failover=failover,
        transport=transport,
        max_concurrency=max_concurrency,
    )


class _Bucket:
    """A token bucket: ``rate`` starts per second, bursts of at most ``max(1, rate)``."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.at = clock()

    def available(self) -> int:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        self.tokens -= n


def _attempt(exc: BaseException, now: float) -> Attempt:
    return Attempt(
        at=now,
        error=type(exc).__name__,
        message=str(exc) or repr(exc),
        status=getattr(exc, "status", None),
        retry_after=getattr(exc, "retry_after", None),
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The one attempt's own error, out of a single-attempt client's RetryExhaustedError."""
    if isinstance(exc, RetryExhaustedError) and len(exc.attempts) == 1:
        return exc.attempts[0]
    return exc


def _done(entry: LogEntry | TransparencyLogEntry, *, resolved: bool = False) -> Done:
    receipt = entry.to_json()
    return Done(receipt=receipt, log_index=entry.log_index, resolved=resolved)


def _ignore_store_error(future: asyncio.Future[Any]) -> None:
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        log.warning("giving back unused leases failed (they expire instead): %s", exc)


def _log_outcome(claim: Claim, outcome: Outcome, kind: str) -> None:
    """One log record per recorded outcome, its fields also as record attributes."""
    if not log.isEnabledFor(logging.WARNING if isinstance(outcome, Dead) else logging.INFO):
        return
    sub = claim.submission
    fields: dict[str, Any] = {
        "event": "outcome",
        "outcome": kind,
        "submission": sub.id,
        "backend": sub.backend,
        "uuid": sub.uuid,
        "attempt": sub.attempts + 1,
    }
    level = logging.INFO
    if isinstance(outcome, Done):
        fields["log_index"] = outcome.log_index
    elif kind != "lost_lease":
        failed = outcome.attempt
        fields.update(error=failed.error, status=failed.status, detail=failed.message)
        if isinstance(outcome, Retry):
            fields["next_attempt_at"] = outcome.at
        else:
            fields["reason"] = outcome.reason.value
            level = logging.WARNING
    log.log(level, "submission %s: %s", sub.id, kind, extra=fields)


class SubmissionWorker:
    """Drains a :class:`SubmissionQueue` into its logs (see the module docstring).

    Args:
        queue: the queue.
        clients: a verifying client per backend key (default: built from the
            backends stored in the queue with :func:`client_for`).
        concurrency: most submissions in flight in total.
        limits: per-backend limits by backend key (default ``default_limits``).
        default_limits: the limits of backends not in ``limits``.
        retry: the backoff schedule and attempt cap (``max_attempts`` counts
            every failed attempt of an item, over all runs).
        lease: seconds an item stays leased to this worker per claim.
        poll_interval: seconds between looks at an idle queue.
        breaker_reset: seconds a backend's open circuit breaker waits before a probe.
        on_progress: called with the running report after each batch of outcomes is recorded.
        metrics: where the worker counts (default: a fresh :class:`QueueMetrics`).
        metrics_port: serve ``GET /healthz`` and ``GET /metrics`` on this port while
            running (0: any free port, then see :attr:`metrics_url`; None: no server).
        metrics_host: the address to serve them on (loopback by default).
        health_interval: seconds between the queue counts behind ``/healthz`` and
            the depth gauges.
    """

    def __init__(
        self,
        queue: SubmissionQueue,
        *,
        clients: Mapping[str, Submitter] | None = None,
        concurrency: int = 16,
        limits: Mapping[str, BackendLimits] | None = None,
        default_limits: BackendLimits | None = None,
        retry: RetryPolicy | None = None,
        lease: float = 120.0,
        poll_interval: float = 0.5,
        breaker_reset: float = 10.0,
        on_progress: Callable[[WorkerReport], None] | None = None,
        metrics: QueueMetrics | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        health_interval: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if lease <= 1.0:
            raise ValueError("lease must be more than a second")
        self.queue = queue
        self.concurrency = concurrency
        self.limits = dict(limits or {})
        self.default_limits = default_limits or BackendLimits(max_in_flight=concurrency)
        self.retry = retry or RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=300.0)
        self.lease = lease
        # A submission must end before its lease: leave room to record the outcome.
        self.deadline = lease * 0.8
        self.poll_interval = poll_interval
        self.breaker_reset = breaker_reset
        self.on_progress = on_progress
        self.report = WorkerReport()
        self._given = dict(clients or {})
        self._clients: dict[str, Submitter] = dict(self._given)
        self._owned: list[Submitter] = []
        self._buckets: dict[str, _Bucket] = {}
        self._backends: list[str] | None = None
        self._backends_at = 0.0
        self._in_flight: dict[str, int] = {}
        self._stop = asyncio.Event()
        self.metrics = metrics or QueueMetrics()
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.health_interval = health_interval
        self.metrics_url: str | None = None
        """``http://host:port`` of ``/healthz`` and ``/metrics`` while they are served."""
        self.listening = asyncio.Event()
        """Set once ``/healthz`` and ``/metrics`` answer (with ``metrics_port``)."""
        self._counts: QueueCounts | None = None
        self._counts_at = 0.0
        self._store_error: str | None = None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, document)`` for ``/healthz``.

        Not ok while the worker is stopping, or when the last look at the queue
        failed or is older than ``max(30, 5 * health_interval)`` seconds (the
        store is unreachable or locked). The document carries the status, the
        counts per state, the oldest due item, the last recorded error and what
        is in flight.
        """
        now = time.time()
        stale = self._counts is None or now - self._counts_at > max(30.0, 5 * self.health_interval)
        if self._stop.is_set():
            status = "stopping"
        elif self._store_error is not None:
            status = f"store unreachable: {self._store_error}"
        elif stale:
            status = "store unreachable: no recent look at the queue"
        else:
            status = "ok"
        doc: dict[str, Any] = {"status": status}
        if self._counts is not None:
            doc.update(self._counts.to_json())
            oldest = self._counts.oldest_due_at
            doc["oldest_due_age_seconds"] = None if oldest is None else max(0.0, now - oldest)
        doc["counted_at"] = self._counts_at or None
        doc["in_flight"] = sum(self._in_flight.values())
        return status == "ok", doc

    def _observe(self, counts: QueueCounts, now: float) -> None:
        self._counts, self._counts_at, self._store_error = counts, now, None
        self.report.open = counts.open
        self.metrics.observe_counts(counts, now=now)

    async def _watch(self, call: Callable[..., asyncio.Future[Any]]) -> None:
        """Look at the queue every ``health_interval`` seconds, for ``/healthz`` and the gauges."""
        while True:
            try:
                counts = await call(self.queue.storage.counts, now=time.time())
            except RekorKitError as exc:
                self._store_error = str(exc)
            else:
                self._observe(counts, time.time())
            await asyncio.sleep(self.health_interval)

    async def _store_failed(self, exc: RekorKitError) -> None:
        """A queue read or write failed: report it, wait, and let the loop try again.

        Outcomes not yet written stay in memory and their items stay leased; if
        this process dies first, the leases expire and the items are looked up
        in the log before any second write.
        """
        self._store_error = str(exc)
        log.error("queue unreachable: %s", exc, extra={"event": "store_error"})
        await asyncio.sleep(self.poll_interval)

    def stop(self) -> None:
        """Stop claiming; items in flight finish and are recorded, then :meth:`run` returns."""
        self._stop.set()

    # ------------------------------------------------------------------ attempts

    def _log_size(self, client: Submitter) -> int | None:
        sizes = client.tracker.snapshot().values()
        return max(sizes) if sizes else None

    async def _find(self, client: Submitter, claim: Claim) -> Done | None:
        """The item's entry, if it is in the log already (verified), else None."""
        sub = claim.submission
        if isinstance(client, AsyncRekorV1Client):
            try:
                return _done(await client.get_entry(uuid=sub.uuid), resolved=True)
            except NotFoundError:
                return None
        cp = await client.checkpoint()
        start = claim.log_size_hint
        if start is None or start > cp.size:
            start = max(0, cp.size - _MAX_SCAN_TILES * tiles.TILE_WIDTH)
        for tile in tiles.level0_tiles(start, cp.size, cp.size):
            data = await client.tiles.tile(0, tile.index, tile.width)
            hashes = tiles.parse_hash_tile(data, tile.width)
            hits = (hashes == memoryview(sub.leaf_hash)).all(axis=1).nonzero()[0]
            for hit in hits.tolist():
                index = tile.index * tiles.TILE_WIDTH + hit
                entry = await client.get_entry(index=index)  # inclusion proof verified
                if merkle.leaf_hash(entry.canonicalized_body) == sub.leaf_hash:
                    return _done(entry, resolved=True)
        return None

    async def _submit(self, client: Submitter, claim: Claim) -> Outcome:
        sub = claim.submission
        if claim.claims > 1:
            # An earlier claim may have landed the entry before its worker stopped.
            found = await self._find(client, claim)
            if found is not None:
                return found
        request = json.loads(sub.request)
        try:
            return _done(await client.submit(request))
        except RekorAPIError as wrapped:
            exc = _unwrap(wrapped)
            if not isinstance(exc, ConflictError | RequestTimeoutError | TransportError):
                raise exc from None
        # A 409 the client could not follow, or a write that may have landed.
        try:
            found = await self._find(client, claim)
        except (RekorAPIError, VerificationError) as lookup_exc:
            exc.add_note(f"lookup afterwards failed: {lookup_exc}")
            raise exc from None
        if found is None:
            raise exc
        return found

    async def _run_one(self, client: Submitter, claim: Claim) -> Outcome:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            outcome = await self._attempt(client, claim)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.latency.observe(time.perf_counter() - started)
        result = "ok" if isinstance(outcome, Done) else outcome.attempt.error
        self.metrics.attempts.labels(result).inc()
        return outcome

    async def _attempt(self, client: Submitter, claim: Claim) -> Outcome:
        sub = claim.submission
        remaining = min(self.deadline, claim.lease_expires - time.time() - self.lease * 0.2)
        try:
            async with asyncio.timeout(max(remaining, 0.1)):
                return await self._submit(client, claim)
        except TimeoutError as exc:
            err: BaseException = RequestTimeoutError(
                f"no outcome within {remaining:.1f} s, before the lease ends"
            )
            err.__cause__ = exc
        except VerificationError as exc:
            log.warning("submission %s: the log's answer did not verify: %s", sub.id, exc)
            return Dead(DeadReason.UNVERIFIED, _attempt(exc, time.time()))
        except Exception as exc:
            err = _unwrap(exc)
        now = time.time()
        attempt = _attempt(err, now)
        self.report.errors[attempt.error] = self.report.errors.get(attempt.error, 0) + 1
        if isinstance(err, RekorAPIError) and err.status is not None and not is_retryable(err):
            return Dead(DeadReason.REJECTED, attempt)
        if sub.attempts + 1 >= self.retry.max_attempts:
            return Dead(DeadReason.EXHAUSTED, attempt)
        if not isinstance(err, RekorAPIError):
            log.warning("submission %s: unexpected error, will retry: %r", sub.id, err)
        return Retry(attempt, now + self.retry.backoff(sub.attempts, err))

    # ------------------------------------------------------------------ the loop

    async def _client(self, backend: str) -> Submitter | None:
        if backend in self._clients:
            return self._clients[backend]
        for b in self.queue.storage.backends():
            if b.key == backend:
                client = client_for(
                    b,
                    max_concurrency=self._limit(backend).max_in_flight,
                    breaker_reset=self.breaker_reset,
                )
                self._owned.append(client)
                self._clients[backend] = client
                if isinstance(client, AsyncRekorV2Client):
                    with contextlib.suppress(RekorAPIError, VerificationError):
                        await client.checkpoint()  # the size hint for later lookups
                return client
        return None

    def _limit(self, backend: str) -> BackendLimits:
        return self.limits.get(backend, self.default_limits)

    def _room(self, backend: str, waiting: int) -> int:
        """Items to claim for a backend: its in-flight limit, and ``_CLAIM_AHEAD`` times more."""
        limit = self._limit(backend)
        room = (1 + _CLAIM_AHEAD) * limit.max_in_flight - self._in_flight.get(backend, 0) - waiting
        if limit.max_rate is not None:
            bucket = self._buckets.setdefault(backend, _Bucket(limit.max_rate, time.monotonic))
            room = min(room, bucket.available())
        return max(room, 0)

    async def run(self, *, once: bool = False, handle_signals: bool = True) -> WorkerReport:
        """Work until stopped (or, with ``once``, until nothing is pending or leased).

        Claims run ahead of the submissions, in the background: when
        an item finishes, the next one starts at once, so the log sees as many
        requests in flight as the verified client alone would keep. Outcomes
        are written in batches, also off the event loop. Claims still waiting
        when the worker stops are given back unused.

        Args:
            once: drain and return: wait out retry delays, return when every item is
                done or dead.
            handle_signals: stop gracefully on SIGTERM and SIGINT (main thread only).
        """
        loop = asyncio.get_running_loop()
        db = ThreadPoolExecutor(1, thread_name_prefix="rekorkit-queue")
        storage = self.queue.storage

        def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
            return loop.run_in_executor(db, functools.partial(fn, *args, **kwargs))

        installed = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.stop)
                    installed.append(sig)
        tasks: dict[asyncio.Task[Outcome], Claim] = {}
        ready: dict[str, collections.deque[Claim]] = {}
        outcomes: list[tuple[Claim, Outcome]] = []
        flushing: asyncio.Future[list[bool]] | None = None
        flushed: list[tuple[Claim, Outcome]] = []
        claiming: asyncio.Task[int] | None = None
        # The last claim found nothing due: claim again after a poll interval, not at once.
        idle_since: float | None = None
        stopper = asyncio.ensure_future(self._stop.wait())
        watcher = asyncio.ensure_future(self._watch(call))
        server = None
        # One transaction per batch of claims and per batch of outcomes, not per item:
        # claim once a batch's worth of room is free, record once half a batch is
        # waiting (or after _RECORD_DELAY, or when nothing else is in flight).
        record_batch = self.concurrency
        outcomes_since = 0.0
        try:
            if self.metrics_port is not None:
                server = await self._serve()
            while True:
                if flushing is not None and flushing.done():
                    try:
                        self._count(flushed, flushing.result())
                    except RekorKitError as exc:  # kept, and written once the store is back
                        outcomes = flushed + outcomes
                        await self._store_failed(exc)
                    flushing = None
                stopping = self._stop.is_set()
                if (
                    flushing is None
                    and outcomes
                    and (
                        len(outcomes) >= record_batch
                        or not tasks
                        or stopping
                        or loop.time() - outcomes_since >= _RECORD_DELAY
                    )
                ):
                    flushed, outcomes = outcomes, []
                    flushing = call(storage.record, flushed, now=time.time())
                if claiming is not None and claiming.done():
                    try:
                        idle_since = None if claiming.result() else time.monotonic()
                    except RekorKitError as exc:
                        claiming = None
                        await self._store_failed(exc)
                    claiming = None
                if not stopping:
                    self._start(ready, tasks, call)
                if stopping and not tasks and claiming is None:
                    break
                buffered = sum(map(len, ready.values()))
                want = (1 + _CLAIM_AHEAD) * self.concurrency - len(tasks) - buffered
                rested = idle_since is None or time.monotonic() - idle_since >= self.poll_interval
                if not stopping and claiming is None and want >= self.concurrency and rested:
                    claiming = asyncio.ensure_future(self._claim(call, ready, want))
                if tasks or claiming is not None:
                    waiting: set[asyncio.Future[Any]] = set(tasks)
                    for pending in (flushing, claiming, None if stopping else stopper):
                        if pending is not None:
                            waiting.add(pending)
                    timeout = self.poll_interval
                    if outcomes and flushing is None:
                        timeout = max(0.0, outcomes_since + _RECORD_DELAY - loop.time())
                    done, _ = await asyncio.wait(
                        waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not outcomes:
                        outcomes_since = loop.time()
                    for task in done & tasks.keys():
                        claim = tasks.pop(task)  # type: ignore[call-overload]
                        key = claim.submission.backend
                        self._in_flight[key] -= 1
                        outcomes.append((claim, task.result()))
                    continue
                if outcomes or flushing is not None:
                    if flushing is not None:
                        await asyncio.wait({flushing})
                    continue
                if stopping:
                    break
                if buffered:  # waiting for a backend's rate or in-flight limit
                    await asyncio.wait({stopper}, timeout=self.poll_interval / 4)
                    continue
                try:
                    counts = await call(storage.counts, now=time.time())
                except RekorKitError as exc:
                    await self._store_failed(exc)
                    continue
                self._observe(counts, time.time())
                if once and counts.open == 0:
                    break
                wait = self.poll_interval
                if counts.next_due_at is not None and not counts.due:
                    wait = min(wait, max(0.0, counts.next_due_at - time.time()))
                await asyncio.wait({stopper}, timeout=wait)
                idle_since = None
        finally:
            if claiming is not None:
                with contextlib.suppress(Exception):
                    await claiming
            if tasks:  # an error in the loop itself: let what is in flight finish
                for task, claim in list(tasks.items()):
                    with contextlib.suppress(Exception):
                        outcomes.append((claim, await task))
            unused = [c for waiting_claims in ready.values() for c in waiting_claims]
            if unused:  # claimed ahead, never sent: due again at once
                with contextlib.suppress(RekorKitError):
                    await call(storage.release, unused)
            if flushing is not None:
                self._count(flushed, await flushing)
            if outcomes:
                self._count(outcomes, await call(storage.record, outcomes, now=time.time()))
            stopper.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if server is not None:
                await server.stop()
                self.metrics_url = None
                self.listening.clear()
            for sig in installed:
                loop.remove_signal_handler(sig)
            for client in self._owned:
                await client.aclose()
            self._owned.clear()
            self._clients = dict(self._given)
            counts = await call(storage.counts, now=time.time())
            self.report.open = counts.open
            db.shutdown(wait=True)
        return self.report

    async def _serve(self) -> MetricsServer:
        from rekorkit.metrics import MetricsServer

        # MetricsServer only calls ``render()`` on what it serves.
        server = MetricsServer(self.metrics, self.health)
        port = await server.start(self.metrics_host, self.metrics_port or 0)
        host = f"[{self.metrics_host}]" if ":" in self.metrics_host else self.metrics_host
        self.metrics_url = f"http://{host}:{port}"
        self.listening.set()
        log.info(
            "serving /healthz and /metrics on %s",
            self.metrics_url,
            extra={"event": "listening", "url": self.metrics_url},
        )
        return server

    async def _claim(
        self,
        call: Callable[..., asyncio.Future[Any]],
        ready: dict[str, collections.deque[Claim]],
        want: int,
    ) -> int:
        """Lease up to ``want`` due items into ``ready``, per backend within its limits."""
        now = time.monotonic()
        if self._backends is None or now - self._backends_at >= self.poll_interval:
            self._backends = [b.key for b in await call(self.queue.storage.backends)]
            self._backends_at = now
        claimed = 0
        for key in self._backends:
            waiting = ready.setdefault(key, collections.deque())
            room = min(want - claimed, self._room(key, len(waiting)))
            if room <= 0:
                continue
            client = await self._client(key)
            if client is None:
                continue
            claims: list[Claim] = await call(
                self.queue.storage.claim,
                limit=room,
                lease=self.lease,
                now=time.time(),
                backend=key,
                log_size_hint=self._log_size(client),
            )
            if key in self._buckets:
                self._buckets[key].take(len(claims))
            waiting.extend(claims)
            claimed += len(claims)
        return claimed

    def _start(
        self,
        ready: dict[str, collections.deque[Claim]],
        tasks: dict[asyncio.Task[Outcome], Claim],
        call: Callable[..., asyncio.Future[Any]],
    ) -> None:
        """Submit claimed items while there is room; give back those whose lease ran low."""
        stale: list[Claim] = []
        for key, waiting in ready.items():
            limit = self._limit(key).max_in_flight
            while waiting and len(tasks) < self.concurrency and self._in_flight.get(key, 0) < limit:
                claim = waiting.popleft()
                if claim.lease_expires - time.time() < self.lease / 2:
                    stale.append(claim)
                    continue
                task = asyncio.ensure_future(self._run_one(self._clients[key], claim))
                tasks[task] = claim
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
        if stale:
            # Waited too long behind a slow log: due again, no attempt counted (if this
            # fails, the leases simply expire).
            release = call(self.queue.storage.release, stale)
            release.add_done_callback(_ignore_store_error)

    def _count(self, outcomes: list[tuple[Claim, Outcome]], applied: list[bool]) -> None:
        for (claim, outcome), ok in zip(outcomes, applied, strict=True):
            if not ok:
                self.report.lost_leases += 1
                kind = "lost_lease"
            elif isinstance(outcome, Done):
                self.report.done += 1
                self.report.resolved += outcome.resolved
                kind = "resolved" if outcome.resolved else "logged"
            elif isinstance(outcome, Retry):
                self.report.retried += 1
                kind = "retry"
            else:
                self.report.dead += 1
                kind = "dead"
            self.metrics.submissions.labels(kind).inc()
            _log_outcome(claim, outcome, kind)
        if self.on_progress is not None:
            self.on_progress(self.report)
