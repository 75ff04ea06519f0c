"""``RekorSyncService``: follow logs continuously, store what verifies, alert on the rest.

Each round, per log:

1. fetch the signed checkpoint and verify it (signature, origin, witness policy);
2. run the :class:`DivergenceDetector` against the stored history (rollback,
   same size with another root, a history the new tree does not extend) and
   against every second vantage point (split view): a vantage of a tile log
   serves ``/checkpoint`` and tiles, a vantage of a Rekor v1 log is another v1
   API root (``/api/v1/log`` and ``/api/v1/log/proof``);
3. verify and store the new entries with the bulk engine
   (:func:`rekorkit.audit.verify_tile_log` or :func:`rekorkit.audit.verify_v1_log`),
   in steps of ``max_batch`` entries, each step committed with its verified range;
4. match the watchlist over the newly stored columns (alerts and the match
   progress in one transaction);
5. only when every entry up to the checkpoint is stored, advance the frontier
   and record the checkpoint and where it was seen, in one transaction
   (:meth:`DuckDBStore.advance_frontier`).

A crash at any point leaves stored entries inside recorded ranges, the
frontier at a checkpoint whose entries are all stored, and alerts either
stored with the matches that produced them or not at all; the next run
resumes from there. A log that fails backs off and alerts after
``error_alert_after`` failed rounds; the other logs keep running.

The store is a DuckDB file, or a ``postgresql://`` URL that several monitors
share (:class:`~rekorkit.store.postgres.PostgresStore` with
:class:`~rekorkit.monitor.postgres_alerts.PostgresAlertStore`). Monitors
sharing one store race, and the store settles every race: a range or a
checkpoint another monitor stored first is refused
(:class:`~rekorkit.errors.WriterConflictError`) and this monitor resumes from
what was stored, without counting a failure; a checkpoint smaller than one
another monitor stored after it was fetched is fetched again before it is
called a rollback; alerts are unique by key and each delivery is claimed by
one monitor (:class:`~rekorkit.monitor.publishers.Dispatcher`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from rekorkit.audit import verify_tile_log, verify_v1_log
from rekorkit.audit.v1log import V1_CONCURRENCY
from rekorkit.checkpoint import SignedCheckpoint, WitnessPolicy, open_checkpoint
from rekorkit.client import (
    AsyncRekorV1Client,
    AsyncTileReader,
    RetryPolicy,
    Timeouts,
    VerifyOptions,
)
from rekorkit.errors import (
    DivergenceError,
    MalformedError,
    RekorAPIError,
    RekorKitError,
    StoreError,
    VerificationError,
    WriterConflictError,
)
from rekorkit.monitor.alerts import Alert, AlertKind, AlertStorage, AlertStore
from rekorkit.monitor.config import LogConfig, MonitorConfig, Vantage
from rekorkit.monitor.detector import DivergenceDetector, LogView
from rekorkit.monitor.metrics import MetricsServer, MonitorMetrics
from rekorkit.monitor.publishers import AlertPublisher, Dispatcher
from rekorkit.monitor.watchlist import Watchlist, WatchMatch
from rekorkit.note import NoteVerifier
from rekorkit.store import StoredCheckpoint
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.store.open import open_store

if TYPE_CHECKING:
    from rekorkit.store.postgres import PostgresStore

    MonitorStore = DuckDBStore | PostgresStore

__all__ = ["LogStatus", "RekorSyncService"]

log = logging.getLogger("rekorkit.monitor")

# Entries read back from the store per watchlist pass (bounded memory).
MATCH_SLICE = 262_144
_NETWORK_ERRORS = (RekorAPIError, httpx.HTTPError, OSError, TimeoutError)


@dataclass
class LogStatus:
    """What the service knows about one log right now (``/healthz``)."""

    name: str
    origin: str | None = None
    size: int = 0
    frontier: int = 0
    stored_to: int = 0
    failures: int = 0
    outage_since: str | None = None
    last_error: str | None = None
    last_success: float | None = None
    rounds: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready status."""
        return {
            "origin": self.origin,
            "size": self.size,
            "frontier": self.frontier,
            "stored_to": self.stored_to,
            "lag": max(self.size - self.stored_to, 0),
            "failures": self.failures,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "rounds": self.rounds,
        }


class _HeaderTransport(httpx.AsyncBaseTransport):
    """Adds fixed headers to every request (a vantage point's view selector)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._headers = headers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers.update(self._headers)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _view_checkpoint(view: LogView) -> bytes:
    """The signed checkpoint a log view serves, not verified yet: ``/checkpoint`` of a
    tile log, the active tree head of a Rekor v1 log's ``/api/v1/log``."""
    if isinstance(view, AsyncTileReader):
        return await view.checkpoint()
    info = await view.log_info()
    return info.active.checkpoint.raw


def _resolve_verifier(cfg: LogConfig) -> NoteVerifier:
    from rekorkit.audit.command import resolve_verifier

    return resolve_verifier(cfg.key, cfg.url, cfg.api, cfg.origin)


class _Follower:
    """One log: its readers, detector and state."""

    def __init__(self, service: RekorSyncService, cfg: LogConfig) -> None:
        self.service = service
        self.cfg = cfg
        self.verifier = _resolve_verifier(cfg)
        self.origin = cfg.origin
        self.policy = WitnessPolicy(cfg.witnesses, cfg.witness_threshold) if cfg.witnesses else None
        self.detector = DivergenceDetector(cfg.name, stale_after=cfg.stale_after)
        self.status = LogStatus(cfg.name)
        retry = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=2.0, total_budget=cfg.timeout)
        timeouts = Timeouts(connect=min(5.0, cfg.timeout), read=cfg.timeout, total=cfg.timeout)
        self._client_args: dict[str, Any] = {"retry": retry, "timeout": timeouts}
        self.reader = AsyncTileReader(
            cfg.url, max_concurrency=cfg.concurrency or cfg.max_concurrency, **self._client_args
        )
        self.vantage_readers = [
            (
                v,
                AsyncTileReader(
                    v.url,
                    max_concurrency=4,
                    transport=_HeaderTransport(dict(v.headers)) if v.headers else None,
                    **self._client_args,
                ),
            )
            for v in cfg.vantage
        ]
        self.api = cfg.api

    async def aclose(self) -> None:
        await self.reader.aclose()
        for _, r in self.vantage_readers:
            await r.aclose()

    def _v1_client(self, url: str, headers: Mapping[str, str] | None = None) -> AsyncRekorV1Client:
        """A client for a Rekor v1 API root that checks nothing itself: what it reads
        is verified here, with the configured key and witness policy."""
        return AsyncRekorV1Client(
            url,
            verify=VerifyOptions.none(),
            transport=_HeaderTransport(dict(headers)) if headers else None,
            **self._client_args,
        )

    # -- one round ---------------------------------------------------------------

    async def _signed_checkpoint(self) -> SignedCheckpoint | None:
        """The log's checkpoint, verified; ``None`` (and an alert) when it does not verify."""
        if self.api == "auto":
            from rekorkit.client.probe import detect_api

            self.api = await detect_api(self.cfg.url, **self._client_args)
        if self.api == "v1":
            async with self._v1_client(self.cfg.url) as client:
                raw = await _view_checkpoint(client)
        else:
            raw = await _view_checkpoint(self.reader)
        try:
            return open_checkpoint(raw, self.verifier, origin=self.origin, policy=self.policy)
        except VerificationError as exc:
            exc.evidence.setdefault("note", raw.decode("utf-8", "replace"))
            origin = self.origin or self.verifier.name
            await self.service._raise(
                self.detector.verification_alert(origin, exc, source=self.cfg.url)
            )
            return None

    async def round(self) -> None:
        svc, store, cfg = self.service, self.service.store, self.cfg
        signed = await self._signed_checkpoint()
        if signed is None:
            return
        origin = signed.origin
        self.status.origin, self.status.size = origin, signed.size
        svc.metrics.log_size.labels(cfg.name).set(signed.size)
        stored = await asyncio.to_thread(store.latest_checkpoint, origin)
        if stored is not None and signed.size < stored.size:
            # Another monitor sharing the store may have stored a newer checkpoint
            # after ours was fetched: only a fetch made after reading the store
            # shows a rollback.
            signed = await self._signed_checkpoint()
            if signed is None:
                return
            self.status.size = signed.size
        reader = self.reader if self.api == "v2" else None
        alert = await self.detector.check(stored, signed, reader, source=cfg.url)
        if alert is not None:
            await svc._raise(alert)
            return
        for vantage, vreader in self.vantage_readers:
            await self._check_vantage(signed, vantage, vreader)
        if signed.size == 0:
            # An empty tree commits to nothing: no entries to store, and no checkpoint
            # to record (no consistency proof starts from it, RFC 9162 §2.1.4).
            return

        frontier = await asyncio.to_thread(store.frontier, origin)
        if frontier is not None:
            start = frontier[0]
        elif cfg.start is not None:
            start = min(cfg.start, signed.size)
        else:  # "head": from the size seen first
            start = signed.size
        while not svc.stopping:
            missing = await asyncio.to_thread(store.missing_ranges, origin, start, signed.size)
            if not missing:
                break
            end = min(signed.size, missing[0][0] + cfg.max_batch)
            if not await self._sync_step(signed, start, end):
                return
        await self._match(origin, start)
        left = await asyncio.to_thread(store.missing_ranges, origin, start, signed.size)
        if left:  # stopped mid-catch-up: the frontier stays where its entries are
            return
        cp = StoredCheckpoint(origin, signed.size, signed.root, signed.raw)
        try:
            await asyncio.to_thread(store.advance_frontier, cp, start=start, source=cfg.url)
        except StoreError:
            ahead = await asyncio.to_thread(store.frontier, origin)
            if ahead is None or ahead[1].size < signed.size:
                raise
            # Another monitor sharing the store advanced past this checkpoint first.
        self.status.frontier = self.status.stored_to = signed.size
        svc.metrics.frontier.labels(cfg.name).set(signed.size)
        svc.metrics.lag.labels(cfg.name).set(0)
        latest = await asyncio.to_thread(store.latest_checkpoint, origin)
        if latest is not None:
            stale = self.detector.check_stale(latest)
            if stale is not None:
                await svc._raise(stale)

    async def _sync_step(self, signed: SignedCheckpoint, start: int, end: int) -> bool:
        """Verify and store ``[.., end)``; False (after an alert) if verification failed."""
        svc, cfg = self.service, self.cfg
        t0 = time.perf_counter()
        try:
            if self.api == "v1":
                report = await verify_v1_log(
                    cfg.url,
                    self.verifier,
                    store=svc.store,
                    start=start,
                    end=end,
                    concurrency=cfg.concurrency or V1_CONCURRENCY,
                )
            else:
                report = await verify_tile_log(
                    self.reader,
                    self.verifier,
                    store=svc.store,
                    start=start,
                    end=end,
                    origin=signed.origin,
                    concurrency=cfg.concurrency,  # None: the reader's adaptive window
                    url=cfg.url,
                )
        except DivergenceError as exc:
            if _newer_stored(exc):
                # The bulk engine read its own checkpoint, and another monitor sharing
                # the store stored a newer one meanwhile; the next round's detector
                # (which fetches again before calling it a rollback) decides.
                log.info("%s: a newer checkpoint was stored meanwhile: %s", cfg.name, exc)
                return False
            await svc._raise(self.detector.verification_alert(signed.origin, exc, source=cfg.url))
            return False
        except VerificationError as exc:
            await svc._raise(self.detector.verification_alert(signed.origin, exc, source=cfg.url))
            return False
        seconds = time.perf_counter() - t0
        svc.metrics.entries.labels(cfg.name).inc(report.stored)
        if seconds > 0:
            svc.metrics.rate.labels(cfg.name).set(report.entries / seconds)
        self.status.stored_to = end
        svc.metrics.lag.labels(cfg.name).set(max(signed.size - end, 0))
        log.info(
            "%s: stored %d entries up to %d of %d (%.0f/s)",
            cfg.name,
            report.stored,
            end,
            signed.size,
            report.entries / seconds if seconds else 0.0,
        )
        await self._match(signed.origin, start)
        return True

    async def _check_vantage(
        self, ours: SignedCheckpoint, vantage: Vantage, vreader: AsyncTileReader
    ) -> None:
        """Compare ``vantage``'s checkpoint with ours through the API the log speaks.

        A vantage point is a third party: what it serves never fails our round.
        """
        try:
            if self.api != "v1":
                await self._compare_view(ours, vantage, self.reader, vreader)
                return
            # A vantage of a v1 log is another v1 API root: no /checkpoint, no tiles.
            async with (
                self._v1_client(self.cfg.url) as our_api,
                self._v1_client(vantage.url, vantage.headers) as their_api,
            ):
                await self._compare_view(ours, vantage, our_api, their_api)
        except _NETWORK_ERRORS as exc:
            # The tiles or the consistency proof could not be read: that proves nothing
            # either way. Tiles that were read and do not verify are alerts (detector).
            log.warning(
                "%s: vantage %s: no consistency proof: %s", self.cfg.name, vantage.name, exc
            )

    async def _vantage_checkpoint(
        self, ours: SignedCheckpoint, vantage: Vantage, their_view: LogView
    ) -> SignedCheckpoint | None:
        """``vantage``'s checkpoint, verified like ours; ``None`` (after a warning, or an
        alert for a well-formed note that does not verify) when it has none to use."""
        unusable: RekorKitError
        try:
            raw = await _view_checkpoint(their_view)
        except _NETWORK_ERRORS as exc:
            log.warning("%s: vantage %s unreachable: %s", self.cfg.name, vantage.name, exc)
            return None
        except (MalformedError, VerificationError) as exc:
            # A v1 answer that does not parse, or whose fields contradict the tree
            # head it carries: nothing signed to hold against the log.
            unusable = exc
        else:
            try:
                return open_checkpoint(raw, self.verifier, origin=ours.origin, policy=self.policy)
            except MalformedError as exc:
                # Not a signed note, not UTF-8, or a body that is no checkpoint (the
                # signature is checked first): an error page or a broken mirror,
                # nothing signed to hold against the log.
                unusable = exc
            except VerificationError as exc:
                exc.evidence.setdefault("note", raw.decode("utf-8", "replace"))
                await self.service._raise(
                    self.detector.verification_alert(ours.origin, exc, source=vantage.url)
                )
                return None
        log.warning(
            "%s: vantage %s answers no usable checkpoint: %s", self.cfg.name, vantage.name, unusable
        )
        return None

    async def _compare_view(
        self, ours: SignedCheckpoint, vantage: Vantage, our_view: LogView, their_view: LogView
    ) -> None:
        svc = self.service
        theirs = await self._vantage_checkpoint(ours, vantage, their_view)
        if theirs is None:
            return
        alert = await self.detector.check_vantage(
            ours, our_view, theirs, their_view, source=vantage.url, our_source=self.cfg.url
        )
        if alert is not None:
            await svc._raise(alert)
            return
        seen = StoredCheckpoint(theirs.origin, theirs.size, theirs.root, theirs.raw)
        await asyncio.to_thread(svc.store.record_sighting, seen, source=vantage.url)

    async def _match(self, origin: str, start: int) -> None:
        """Match the watchlist over stored entries not matched yet (contiguous from ``start``)."""
        svc = self.service
        ranges = await asyncio.to_thread(svc.store.verified_ranges, origin)
        top = next((e for s, e in ranges if s <= start < e), start)
        if not svc.watchlist:  # nothing to match: items added later need a backfill
            await asyncio.to_thread(svc.alerts.add, [], matched=(origin, top))
            return
        lo = max(await asyncio.to_thread(svc.alerts.matched_to, origin), start)
        await svc._scan(self.cfg.name, origin, lo, top, progress=True)


def _alert_store(store: MonitorStore) -> AlertStorage:
    """The alert store in ``store``'s database: DuckDB, or PostgreSQL shared by monitors."""
    if isinstance(store, DuckDBStore):
        return AlertStore(store)
    from rekorkit.monitor.postgres_alerts import PostgresAlertStore

    return PostgresAlertStore(store)


def _newer_stored(exc: DivergenceError) -> bool:
    """Whether ``exc`` is only "the store holds a larger checkpoint than the one read"."""
    old, new = exc.evidence.get("old_size"), exc.evidence.get("new_size")
    return isinstance(old, int) and isinstance(new, int) and new < old


class RekorSyncService:
    """Follows logs, stores verified entries, detects divergence, publishes alerts.

    Use it in an application (``await service.start()`` ... ``await service.stop()``)
    or as ``rekorkit monitor --config monitor.toml``.

    Args:
        config: the logs, watchlist, publishers and endpoint.
        store: an open store (default: the config's ``db``, opened here: a DuckDB
            file, or a PostgreSQL database for a ``postgresql://`` URL).
        publishers: more publishers (e.g. :class:`CallbackPublisher`), after the config's.
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        store: MonitorStore | None = None,
        publishers: Sequence[AlertPublisher] = (),
    ) -> None:
        self.config = config
        self._own_store = store is None
        self.store: MonitorStore = (
            store if store is not None else cast("MonitorStore", open_store(config.db))
        )
        try:
            self.alerts = _alert_store(self.store)
        except BaseException:
            if self._own_store:
                self.store.close()
            raise
        self.watchlist: Watchlist = config.watchlist
        self.metrics = MonitorMetrics()
        self.dispatcher = Dispatcher(
            self.alerts, [*config.publishers, *publishers], lease=config.delivery_lease
        )
        self.followers = [_Follower(self, cfg) for cfg in config.logs]
        self.stopping = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: MetricsServer | None = None
        self.http_port: int | None = None

    # -- alerts --------------------------------------------------------------------

    async def _raise(self, alert: Alert) -> None:
        new = await asyncio.to_thread(self.alerts.add, [alert])
        if new:
            self.metrics.alerts.labels(alert.kind.value).inc()
            log.warning("alert %s: %s", alert.kind.value, alert.summary)
            self._wake.set()

    async def _scan(self, name: str, origin: str, lo: int, hi: int, *, progress: bool) -> int:
        """Match ``[lo, hi)`` of ``origin``'s stored entries; return new alerts."""
        acked = await asyncio.to_thread(self.alerts.acknowledged)
        new = 0
        for a in range(lo, hi, MATCH_SLICE):
            b = min(hi, a + MATCH_SLICE)
            matches = await asyncio.to_thread(self._matches, origin, a, b)
            wanted = sorted({m.log_index for m in matches})
            stored = await asyncio.to_thread(self.store.entries_at, origin, wanted)
            rows = {int(i): r for r, i in enumerate(stored.column("log_index").to_pylist())}
            notes: dict[int, str | None] = {}
            found = []
            for m in matches:
                uuid = m.leaf_hash.hex()
                if uuid in acked or (m.fingerprint and m.fingerprint in acked):
                    continue
                found.append(
                    Alert.make(
                        AlertKind.WATCH_MATCH,
                        name,
                        origin,
                        f"{origin}: entry {m.log_index} matches {m.watch}",
                        {
                            "watch": m.watch,
                            "value": m.value,
                            "log_index": m.log_index,
                            "uuid": uuid,
                            "fingerprint": m.fingerprint,
                            "entry": self._entry_evidence(origin, stored, rows[m.log_index], notes),
                        },
                        identity=(m.watch, m.log_index, uuid),
                    )
                )
            count = await asyncio.to_thread(
                self.alerts.add, found, matched=(origin, b) if progress else None
            )
            for _ in range(count):
                self.metrics.alerts.labels(AlertKind.WATCH_MATCH.value).inc()
            new += count
        if new:
            self._wake.set()
        return new

    def _matches(self, origin: str, a: int, b: int) -> list[WatchMatch]:
        """Watch matches among stored entries ``[a, b)``, over the watch index (DuckDB or
        PostgreSQL: fields read once per entry, then one join)."""
        return self.watchlist.scan_store(self.store, origin, a, b)

    def _entry_evidence(
        self, origin: str, table: Any, row: int, notes: dict[int, str | None]
    ) -> dict[str, Any]:
        """The entry as stored: its leaf bytes (re-hash to the UUID) and checkpoint."""
        body = table.column("body")[row].as_py()
        cp_size = int(table.column("checkpoint_size")[row].as_py())
        if cp_size not in notes:
            cp = self.store.checkpoint(origin, cp_size)
            notes[cp_size] = cp.note.decode("utf-8", "replace") if cp else None
        return {
            "body": base64.b64encode(body).decode(),
            "checkpoint_size": cp_size,
            "checkpoint": notes[cp_size],
        }

    async def backfill(self) -> int:
        """Match the watchlist over every stored entry (after adding watch items); new alerts."""
        new = 0
        names = {f.status.origin: f.cfg.name for f in self.followers if f.status.origin}
        for summary in await asyncio.to_thread(self.store.origins):
            for a, b in await asyncio.to_thread(self.store.verified_ranges, summary.origin):
                name = names.get(summary.origin, "")
                new += await self._scan(name, summary.origin, a, b, progress=False)
        await self.dispatcher.deliver()
        return new

    async def test_alert(self) -> dict[str, str | None]:
        """Send a test alert through every publisher; per publisher, ``None`` or the error."""
        now = _dt.datetime.now(_dt.UTC)
        alert = Alert.make(AlertKind.TEST, "", "", "test alert", {}, identity=(now,))
        return await self.dispatcher.broadcast(alert.to_json(now))

    # -- running ---------------------------------------------------------------------

    async def sync_once(self) -> dict[str, LogStatus]:
        """One round over every log (errors are recorded, not raised), then deliver alerts."""
        await asyncio.gather(*(self._guarded_round(f) for f in self.followers))
        await self._deliver()
        return {f.cfg.name: f.status for f in self.followers}

    async def _deliver(self) -> None:
        before = self.dispatcher.failures
        await self.dispatcher.deliver()
        self.metrics.deliveries_failed.inc(self.dispatcher.failures - before)

    async def _guarded_round(self, f: _Follower) -> bool:
        st = f.status
        try:
            await f.round()
        except WriterConflictError as exc:
            # Another monitor sharing the store got there first: not a failure of the
            # log; the next round resumes from what it stored.
            log.info("%s: another writer stored first: %s", f.cfg.name, exc)
            return True
        except (*_NETWORK_ERRORS, StoreError, RekorKitError) as exc:
            now = _dt.datetime.now(_dt.UTC)
            st.failures += 1
            st.outage_since = st.outage_since or now.isoformat()
            st.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.errors.labels(f.cfg.name).inc()
            log.warning("%s: round failed (%d in a row): %s", f.cfg.name, st.failures, exc)
            if st.failures >= f.cfg.error_alert_after:
                await self._raise(
                    Alert.make(
                        AlertKind.LOG_ERROR,
                        f.cfg.name,
                        st.origin or f.origin or "",
                        f"{f.cfg.name}: {st.failures} failed rounds since {st.outage_since}",
                        {
                            "url": f.cfg.url,
                            "failures": st.failures,
                            "since": st.outage_since,
                            "last_error": st.last_error,
                            "status": getattr(exc, "status", None),
                        },
                        identity=(f.cfg.name, st.outage_since),
                    )
                )
            return False
        st.rounds += 1
        st.failures, st.outage_since, st.last_error = 0, None, None
        st.last_success = time.time()
        self.metrics.last_success.labels(f.cfg.name).set(st.last_success)
        return True

    async def _follow(self, f: _Follower) -> None:
        while not self.stopping:
            ok = await self._guarded_round(f)
            delay = f.cfg.poll_interval
            if not ok:
                delay = min(f.cfg.poll_interval * 2 ** min(f.status.failures, 6), 300.0)
            self._wake.set()
            await self._sleep(delay)

    async def _deliver_loop(self) -> None:
        while not self.stopping:
            self._wake.clear()
            await self._deliver()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.delivery_interval)

    async def _heartbeat_loop(self, interval: float) -> None:
        while not self.stopping:
            now = _dt.datetime.now(_dt.UTC)
            doc = Alert.make(
                AlertKind.HEARTBEAT,
                "",
                "",
                "rekorkit monitor is alive",
                {"logs": {f.cfg.name: f.status.to_json() for f in self.followers}},
                identity=(now,),
            ).to_json(now)
            await self.dispatcher.broadcast(doc)
            if self.config.heartbeat_url:
                try:
                    async with httpx.AsyncClient(timeout=10) as client:
                        await client.get(self.config.heartbeat_url)
                except httpx.HTTPError as exc:
                    log.warning("heartbeat ping failed: %s", exc)
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, document)`` for ``/healthz``: not ok when every log is failing."""
        logs = {f.cfg.name: f.status.to_json() for f in self.followers}
        failing = [f for f in self.followers if f.status.failures >= f.cfg.error_alert_after]
        ok = not self.stopping and len(failing) < len(self.followers)
        return ok, {"status": "ok" if ok else "failing", "logs": logs}

    async def start(self) -> None:
        """Start following every log in the background (and the HTTP endpoint, if configured)."""
        if self.config.metrics_port is not None:
            self._http = MetricsServer(self.metrics, self.health)
            self.http_port = await self._http.start(
                self.config.metrics_host, self.config.metrics_port
            )
        self._tasks = [asyncio.ensure_future(self._follow(f)) for f in self.followers]
        self._tasks.append(asyncio.ensure_future(self._deliver_loop()))
        if self.config.heartbeat_interval:
            self._tasks.append(
                asyncio.ensure_future(self._heartbeat_loop(self.config.heartbeat_interval))
            )

    def request_stop(self) -> None:
        """Ask the service to stop after the step in hand (safe from a signal handler)."""
        self.stopping = True
        self._wake.set()

    async def stop(self) -> None:
        """Finish the step in hand, commit, deliver what is pending, and close."""
        self.request_stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._deliver()
        if self._http is not None:
            await self._http.stop()
        for f in self.followers:
            await f.aclose()
        for pub in self.dispatcher.publishers:
            closer: Callable[[], Any] | None = getattr(pub, "aclose", None)
            if closer is not None:
                await closer()
        if self._own_store:
            self.store.close()

    async def run(self) -> None:
        """Run until :meth:`request_stop` (e.g. from SIGTERM), then stop cleanly."""
        await self.start()
        try:
            while not self.stopping:
                await asyncio.sleep(0.1)
        finally:
            await self.stop()

    async def __aenter__(self) -> RekorSyncService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
