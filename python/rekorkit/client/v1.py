"""Rekor v1 REST clients: :class:`RekorV1Client` and its async twin.

Both run the same flows (:class:`V1Flows`), so submit, lookup, search, log
info and proofs behave identically sync and async. Every entry is verified
before it is returned (:mod:`rekorkit.client.verification`), every checkpoint
is chained to the latest one trusted (:mod:`rekorkit.client.tracking`), and a
409 on submission resolves to the existing entry so a retried submission is
idempotent (Rekor's issue tracker, scaffolding #900).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio
import httpx

from rekorkit.client._flow import Flow, adrive, drive
from rekorkit.client._session import AsyncSession, SyncSession
from rekorkit.client._v1_flows import MAX_SEARCH_ITEMS, LogInfo, ShardInfo, V1Flows
from rekorkit.client.backends import Backend
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries import LogEntry
from rekorkit.entries.canonical import (
    Verifier,
    dsse_v001_request,
    hashedrekord_v001_request,
    intoto_v002_request,
)
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.entries.dsse import Envelope
from rekorkit.errors import NotFoundError
from rekorkit.note import NoteVerifier
from rekorkit.trust import LogInstance, log_from_key

__all__ = ["AsyncRekorV1Client", "LogInfo", "RekorV1Client", "ShardInfo", "V1Flows"]


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _ordered(indices: Sequence[int], found: Iterable[LogEntry]) -> list[LogEntry]:
    by_index = {e.log_index: e for e in found}
    missing = [i for i in indices if i not in by_index]
    if missing:
        raise NotFoundError(f"no entries at indices {missing[:10]}", status=404)
    return [by_index[i] for i in indices]


def _ordered_columns(indices: Sequence[int], cols: LogEntryColumns) -> LogEntryColumns:
    rows: dict[int, int] = {}
    for row, index in enumerate(cols.log_indexes.tolist()):
        rows.setdefault(index, row)
    missing = [i for i in indices if i not in rows]
    if missing:
        raise NotFoundError(f"no entries at indices {missing[:10]}", status=404)
    order = [rows[i] for i in indices]
    return cols if order == list(range(len(cols))) else cols.take(order)


def _resolve(
    base_url: str | Sequence[str] | Backend,
    public_key: bytes | str | None,
    log: LogInstance | None,
) -> tuple[list[str], LogInstance | None]:
    if isinstance(base_url, Backend):
        urls = list(base_url.urls)
        public_key = public_key or base_url.public_key
    else:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if log is None and public_key is not None:
        log = log_from_key(urls[0], public_key, api_version=1)
    return urls, log


class RekorV1Client:
    """Blocking Rekor v1 client; every entry it returns has been verified.

    Args:
        base_url: the log URL, mirrors, or a :class:`Backend`.
        public_key: the log key (PEM/DER); or pass ``log``.
        log: the log's :class:`LogInstance` (from a trusted root).
        verifier: the checkpoint verifier, if the key name differs from the URL host.
        verify: which checks to run (:class:`VerifyOptions`).
        tracker: checkpoint memory to share with other clients.
        transport, retry, timeout, http2, max_connections: HTTP settings.
        failover: a prepared :class:`Failover` with its breakers (else one over the URLs).
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | Backend,
        *,
        public_key: bytes | str | None = None,
        log: LogInstance | None = None,
        verifier: NoteVerifier | None = None,
        verify: VerifyOptions | None = None,
        tracker: CheckpointTracker | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        failover: Failover | None = None,
        timeout: Timeouts | None = None,
        http2: bool = False,
        max_connections: int = 16,
    ) -> None:
        urls, log = _resolve(base_url, public_key, log)
        self.flows = V1Flows(log, verifier=verifier, options=verify, tracker=tracker)
        self._session = SyncSession(
            urls,
            transport=transport,
            retry=retry,
            failover=failover,
            timeout=timeout,
            http2=http2,
            max_concurrency=max_connections,
        )

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def __enter__(self) -> RekorV1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: Flow[Any]) -> Any:
        return drive(flow, self._session.request)

    def submit(self, proposed: Mapping[str, Any]) -> LogEntry:
        """Log a ProposedEntry; a duplicate returns the existing entry."""
        return self._run(self.flows.submit(proposed))  # type: ignore[no-any-return]

    def submit_hashedrekord(self, signature: bytes, verifier: Verifier, digest: bytes) -> LogEntry:
        """Log a signature over a SHA-256 digest with its certificate or key."""
        return self.submit(hashedrekord_v001_request(signature, verifier, digest))

    def submit_dsse(self, envelope: Envelope | str, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``dsse`` 0.0.1."""
        return self.submit(dsse_v001_request(envelope, verifiers))

    def submit_intoto(self, envelope: Envelope, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``intoto`` 0.0.2."""
        return self.submit(intoto_v002_request(envelope, verifiers))

    def get_entry(self, index: int | None = None, *, uuid: str | None = None) -> LogEntry:
        """The entry at ``index`` or with ``uuid`` (64/80 hex)."""
        if (index is None) == (uuid is None):
            raise ValueError("pass exactly one of index and uuid")
        if uuid is not None:
            return self._run(self.flows.get_by_uuid(uuid))  # type: ignore[no-any-return]
        return self._run(self.flows.get_by_index(index))  # type: ignore[arg-type,no-any-return]

    def search(
        self,
        *,
        uuids: Sequence[str] = (),
        indexes: Sequence[int] = (),
        entries: Sequence[Mapping[str, Any]] = (),
    ) -> list[LogEntry]:
        """Search by UUIDs, indexes or proposed entries, 10 items per request."""
        out: list[LogEntry] = []
        for kind, items in (("u", uuids), ("i", indexes), ("e", entries)):
            for chunk in _chunks(list(items), MAX_SEARCH_ITEMS):
                kw: dict[str, Any] = {{"u": "uuids", "i": "indexes", "e": "entries"}[kind]: chunk}
                out.extend(self._run(self.flows.search_chunk(**kw)))
        return out

    def get_entries(self, indices: Sequence[int]) -> list[LogEntry]:
        """Entries at many indices, in the given order (NotFoundError if any is missing)."""
        found: list[LogEntry] = []
        for chunk in _chunks(list(indices), MAX_SEARCH_ITEMS):
            found.extend(self._run(self.flows.search_chunk(indexes=chunk)))
        return _ordered(indices, found)

    def get_entry_columns(self, indices: Sequence[int]) -> LogEntryColumns:
        """Entries at many indices as columns, in the given order (for batch checks).

        Each row is verified as :meth:`get_entries` does, unless the client
        was built with those checks turned off (then the caller checks them).
        """
        parts = [
            self._run(self.flows.search_columns(c))
            for c in _chunks(list(indices), MAX_SEARCH_ITEMS)
        ]
        return _ordered_columns(indices, LogEntryColumns.concat(parts))

    def log_info(self) -> LogInfo:
        """The log's tree heads, verified and checked for consistency."""
        return self._run(self.flows.log_info())  # type: ignore[no-any-return]

    def public_key(self) -> bytes:
        """The PEM key the log serves."""
        return self._run(self.flows.public_key())  # type: ignore[no-any-return]

    def consistency_proof(
        self, first_size: int, last_size: int, tree_id: int | None = None
    ) -> list[bytes]:
        """The log's consistency proof between two sizes."""
        return self._run(  # type: ignore[no-any-return]
            self.flows.consistency_proof(first_size, last_size, tree_id)
        )


class AsyncRekorV1Client:
    """Awaitable twin of :class:`RekorV1Client`, with concurrent batch lookups.

    Args: as :class:`RekorV1Client`, plus ``max_concurrency`` for batch calls.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | Backend,
        *,
        public_key: bytes | str | None = None,
        log: LogInstance | None = None,
        verifier: NoteVerifier | None = None,
        verify: VerifyOptions | None = None,
        tracker: CheckpointTracker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        failover: Failover | None = None,
        timeout: Timeouts | None = None,
        http2: bool = False,
        max_concurrency: int = 16,
    ) -> None:
        urls, log = _resolve(base_url, public_key, log)
        self.flows = V1Flows(log, verifier=verifier, options=verify, tracker=tracker)
        self.max_concurrency = max_concurrency
        self._limit = anyio.CapacityLimiter(max_concurrency)
        self._session = AsyncSession(
            urls,
            transport=transport,
            retry=retry,
            failover=failover,
            timeout=timeout,
            http2=http2,
            max_concurrency=max_concurrency,
        )

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    async def __aenter__(self) -> AsyncRekorV1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, flow: Flow[Any]) -> Any:
        async with self._limit:
            return await adrive(flow, self._session.request)

    async def submit(self, proposed: Mapping[str, Any]) -> LogEntry:
        """Log a ProposedEntry; a duplicate returns the existing entry."""
        return await self._run(self.flows.submit(proposed))  # type: ignore[no-any-return]

    async def submit_hashedrekord(
        self, signature: bytes, verifier: Verifier, digest: bytes
    ) -> LogEntry:
        """Log a signature over a SHA-256 digest with its certificate or key."""
        return await self.submit(hashedrekord_v001_request(signature, verifier, digest))

    async def submit_dsse(
        self, envelope: Envelope | str, verifiers: Sequence[Verifier]
    ) -> LogEntry:
        """Log a DSSE envelope as ``dsse`` 0.0.1."""
        return await self.submit(dsse_v001_request(envelope, verifiers))

    async def submit_intoto(self, envelope: Envelope, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``intoto`` 0.0.2."""
        return await self.submit(intoto_v002_request(envelope, verifiers))

    async def submit_many(self, proposed: Sequence[Mapping[str, Any]]) -> list[LogEntry]:
        """Log many entries concurrently (bounded); results in input order."""
        results: list[Any] = [None] * len(proposed)
        pending = iter(range(len(proposed)))

        async def worker() -> None:
            for i in pending:
                results[i] = await self.submit(proposed[i])

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(proposed))):
                tg.start_soon(worker)
        return results

    async def get_entry(self, index: int | None = None, *, uuid: str | None = None) -> LogEntry:
        """The entry at ``index`` or with ``uuid`` (64/80 hex)."""
        if (index is None) == (uuid is None):
            raise ValueError("pass exactly one of index and uuid")
        if uuid is not None:
            return await self._run(self.flows.get_by_uuid(uuid))  # type: ignore[no-any-return]
        return await self._run(self.flows.get_by_index(index))  # type: ignore[arg-type,no-any-return]

    async def _chunked(self, calls: list[dict[str, Any]]) -> list[LogEntry]:
        results: list[list[LogEntry]] = [[] for _ in calls]
        pending = iter(range(len(calls)))

        async def worker() -> None:
            for i in pending:
                results[i] = await self._run(self.flows.search_chunk(**calls[i]))

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(calls))):
                tg.start_soon(worker)
        return [e for r in results for e in r]

    async def search(
        self,
        *,
        uuids: Sequence[str] = (),
        indexes: Sequence[int] = (),
        entries: Sequence[Mapping[str, Any]] = (),
    ) -> list[LogEntry]:
        """Search by UUIDs, indexes or proposed entries: requests of 10, run concurrently."""
        calls: list[dict[str, Any]] = []
        for name, items in (("uuids", uuids), ("indexes", indexes), ("entries", entries)):
            calls.extend({name: c} for c in _chunks(list(items), MAX_SEARCH_ITEMS))
        return await self._chunked(calls)

    async def get_entries(self, indices: Sequence[int]) -> list[LogEntry]:
        """Entries at many indices concurrently, in the given order."""
        calls = [{"indexes": c} for c in _chunks(list(indices), MAX_SEARCH_ITEMS)]
        return _ordered(indices, await self._chunked(calls))

    async def get_entry_columns(self, indices: Sequence[int]) -> LogEntryColumns:
        """Entries at many indices as columns, concurrently, in the given order.

        As :meth:`RekorV1Client.get_entry_columns`: rows are verified unless
        the client was built with those checks turned off.
        """
        chunks = _chunks(list(indices), MAX_SEARCH_ITEMS)
        if len(chunks) == 1:  # one request: no task group
            return _ordered_columns(indices, await self._run(self.flows.search_columns(chunks[0])))
        parts: list[LogEntryColumns] = [LogEntryColumns.from_entries([])] * len(chunks)
        pending = iter(range(len(chunks)))

        async def worker() -> None:
            for i in pending:
                parts[i] = await self._run(self.flows.search_columns(chunks[i]))

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(chunks))):
                tg.start_soon(worker)
        return _ordered_columns(indices, LogEntryColumns.concat(parts))

    async def log_info(self) -> LogInfo:
        """The log's tree heads, verified and checked for consistency."""
        return await self._run(self.flows.log_info())  # type: ignore[no-any-return]

    async def public_key(self) -> bytes:
        """The PEM key the log serves."""
        return await self._run(self.flows.public_key())  # type: ignore[no-any-return]

    async def consistency_proof(
        self, first_size: int, last_size: int, tree_id: int | None = None
    ) -> list[bytes]:
        """The log's consistency proof between two sizes."""
        return await self._run(  # type: ignore[no-any-return]
            self.flows.consistency_proof(first_size, last_size, tree_id)
        )
