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

import httpx

from rekorkit.client._base import AsyncShell, SyncShell, resolve_endpoints
from rekorkit.client._flow import Flow
from rekorkit.client._session import HTTP2, SessionConfig
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
from rekorkit.trust import LogInstance

__all__ = ["AsyncRekorV1Client", "LogInfo", "RekorV1Client", "ShardInfo", "V1Flows"]


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _search_calls(
    uuids: Sequence[str], indexes: Sequence[int], entries: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The search requests, at most 10 items each (the Rekor OpenAPI, searchLogQuery)."""
    calls: list[dict[str, Any]] = []
    for name, items in (("uuids", uuids), ("indexes", indexes), ("entries", entries)):
        calls.extend({name: c} for c in _chunks(list(items), MAX_SEARCH_ITEMS))
    return calls


def _ordered(indices: Sequence[int], found: Iterable[LogEntry]) -> list[LogEntry]:
    by_index = {e.log_index: e for e in found}
    missing = [i for i in indices if i not in by_index]
    if missing:
        raise NotFoundError(f"no entries at indices {missing[:10]}", status=404)
    return [by_index[i] for i in indices]


def _ordered_columns(indices: Sequence[int], parts: list[LogEntryColumns]) -> LogEntryColumns:
    cols = LogEntryColumns.concat(parts)
    rows: dict[int, int] = {}
    for row, index in enumerate(cols.log_indexes.tolist()):
        rows.setdefault(index, row)
    missing = [i for i in indices if i not in rows]
    if missing:
        raise NotFoundError(f"no entries at indices {missing[:10]}", status=404)
    order = [rows[i] for i in indices]
    return cols if order == list(range(len(cols))) else cols.take(order)


def _lookup(flows: V1Flows, index: int | None, uuid: str | None) -> Flow[LogEntry]:
    if uuid is not None and index is None:
        return flows.get_by_uuid(uuid)
    if index is not None and uuid is None:
        return flows.get_by_index(index)
    raise ValueError("pass exactly one of index and uuid")


def _flows(
    base_url: str | Sequence[str] | Backend,
    public_key: bytes | str | None,
    log: LogInstance | None,
    verifier: NoteVerifier | None,
    verify: VerifyOptions | None,
    tracker: CheckpointTracker | None,
) -> tuple[list[str], V1Flows]:
    ends = resolve_endpoints(base_url, api_version=1, public_key=public_key, log=log)
    return ends.urls, V1Flows(ends.log, verifier=verifier, options=verify, tracker=tracker)


class RekorV1Client(SyncShell):
    """Blocking Rekor v1 client; every entry it returns has been verified.

    Args:
        base_url: the log URL, mirrors, or a :class:`Backend`.
        public_key: the log key (PEM/DER); or pass ``log``.
        log: the log's :class:`LogInstance` (from a trusted root).
        verifier: the checkpoint verifier, if the key name differs from the URL host.
        verify: which checks to run (:class:`VerifyOptions`).
        tracker: checkpoint memory to share with other clients.
        transport: an httpx transport (``MockTransport`` in tests).
        retry: the retry policy (default :class:`RetryPolicy`).
        failover: a prepared :class:`Failover` with its breakers (else one over the URLs).
        timeout: seconds per request (the deadline), or :class:`Timeouts`.
        http2: ``"auto"`` (default) offers HTTP/2 over TLS when ``h2`` is installed;
            ``True`` requires it (the ``http2`` extra), ``False`` never uses it.
        max_concurrency: the most requests in flight (the connection-pool size).
        trust_env: honour proxy and CA variables from the environment, as httpx does.
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
        timeout: float | Timeouts | None = None,
        http2: HTTP2 = "auto",
        max_concurrency: int = 16,
        trust_env: bool = True,
    ) -> None:
        urls, self.flows = _flows(base_url, public_key, log, verifier, verify, tracker)
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        super().__init__(urls, config, transport=transport)

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    def submit(self, request: Mapping[str, Any]) -> LogEntry:
        """Log a ProposedEntry; a duplicate returns the existing entry."""
        return self._run(self.flows.submit(request))

    def submit_many(self, requests: Sequence[Mapping[str, Any]]) -> list[LogEntry]:
        """Log many ProposedEntries, one after the other; results in input order."""
        return [self.submit(r) for r in requests]

    def submit_hashedrekord(
        self, *, digest: bytes, signature: bytes, verifier: Verifier
    ) -> LogEntry:
        """Log a signature over a SHA-256 digest with its certificate or key."""
        return self.submit(hashedrekord_v001_request(signature, verifier, digest))

    def submit_dsse(self, envelope: Envelope | str, *, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``dsse`` 0.0.1, with a verifier per signature."""
        return self.submit(dsse_v001_request(envelope, verifiers))

    def submit_intoto(self, envelope: Envelope, *, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``intoto`` 0.0.2, with a verifier per signature."""
        return self.submit(intoto_v002_request(envelope, verifiers))

    def get_entry(self, index: int | None = None, *, uuid: str | None = None) -> LogEntry:
        """The entry at ``index`` or with ``uuid`` (64/80 hex)."""
        return self._run(_lookup(self.flows, index, uuid))

    def search(
        self,
        *,
        uuids: Sequence[str] = (),
        indexes: Sequence[int] = (),
        entries: Sequence[Mapping[str, Any]] = (),
    ) -> list[LogEntry]:
        """Search by UUIDs, indexes or proposed entries, 10 items per request."""
        calls = _search_calls(uuids, indexes, entries)
        return [e for kw in calls for e in self._run(self.flows.search_chunk(**kw))]

    def get_entries(self, indices: Sequence[int]) -> list[LogEntry]:
        """Entries at many indices, in the given order (NotFoundError if any is missing)."""
        return _ordered(indices, self.search(indexes=indices))

    def get_entry_columns(self, indices: Sequence[int]) -> LogEntryColumns:
        """Entries at many indices as columns, in the given order (for batch checks).

        Each row is verified as :meth:`get_entries` does, unless the client
        was built with those checks turned off (then the caller checks them).
        """
        chunks = _chunks(list(indices), MAX_SEARCH_ITEMS)
        return _ordered_columns(indices, [self._run(self.flows.search_columns(c)) for c in chunks])

    def log_info(self) -> LogInfo:
        """The log's tree heads, verified and checked for consistency."""
        return self._run(self.flows.log_info())

    def public_key(self) -> bytes:
        """The PEM key the log serves."""
        return self._run(self.flows.public_key())

    def consistency_proof(
        self, first_size: int, last_size: int, tree_id: int | None = None
    ) -> list[bytes]:
        """The log's consistency proof between two sizes."""
        return self._run(self.flows.consistency_proof(first_size, last_size, tree_id))


class AsyncRekorV1Client(AsyncShell):
    """Awaitable twin of :class:`RekorV1Client`; batch calls run concurrently.

    Args: as :class:`RekorV1Client`; ``max_concurrency`` also bounds the
    requests of one batch call (``submit_many``, ``search``, ``get_entries``).
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
        timeout: float | Timeouts | None = None,
        http2: HTTP2 = "auto",
        max_concurrency: int = 16,
        trust_env: bool = True,
    ) -> None:
        urls, self.flows = _flows(base_url, public_key, log, verifier, verify, tracker)
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        super().__init__(urls, config, transport=transport)

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    async def submit(self, request: Mapping[str, Any]) -> LogEntry:
        """Log a ProposedEntry; a duplicate returns the existing entry."""
        return await self._run(self.flows.submit(request))

    async def submit_many(self, requests: Sequence[Mapping[str, Any]]) -> list[LogEntry]:
        """Log many ProposedEntries concurrently (bounded); results in input order."""
        return await self._map(self.submit, requests)

    async def submit_hashedrekord(
        self, *, digest: bytes, signature: bytes, verifier: Verifier
    ) -> LogEntry:
        """Log a signature over a SHA-256 digest with its certificate or key."""
        return await self.submit(hashedrekord_v001_request(signature, verifier, digest))

    async def submit_dsse(
        self, envelope: Envelope | str, *, verifiers: Sequence[Verifier]
    ) -> LogEntry:
        """Log a DSSE envelope as ``dsse`` 0.0.1, with a verifier per signature."""
        return await self.submit(dsse_v001_request(envelope, verifiers))

    async def submit_intoto(self, envelope: Envelope, *, verifiers: Sequence[Verifier]) -> LogEntry:
        """Log a DSSE envelope as ``intoto`` 0.0.2, with a verifier per signature."""
        return await self.submit(intoto_v002_request(envelope, verifiers))

    async def get_entry(self, index: int | None = None, *, uuid: str | None = None) -> LogEntry:
        """The entry at ``index`` or with ``uuid`` (64/80 hex)."""
        return await self._run(_lookup(self.flows, index, uuid))

    async def search(
        self,
        *,
        uuids: Sequence[str] = (),
        indexes: Sequence[int] = (),
        entries: Sequence[Mapping[str, Any]] = (),
    ) -> list[LogEntry]:
        """Search by UUIDs, indexes or proposed entries: requests of 10, run concurrently."""

        async def one(kw: dict[str, Any]) -> list[LogEntry]:
            return await self._run(self.flows.search_chunk(**kw))

        found = await self._map(one, _search_calls(uuids, indexes, entries))
        return [e for part in found for e in part]

    async def get_entries(self, indices: Sequence[int]) -> list[LogEntry]:
        """Entries at many indices concurrently, in the given order."""
        return _ordered(indices, await self.search(indexes=indices))

    async def get_entry_columns(self, indices: Sequence[int]) -> LogEntryColumns:
        """Entries at many indices as columns, concurrently, in the given order.

        As :meth:`RekorV1Client.get_entry_columns`: rows are verified unless
        the client was built with those checks turned off.
        """

        async def one(chunk: Sequence[int]) -> LogEntryColumns:
            return await self._run(self.flows.search_columns(chunk))

        return _ordered_columns(
            indices, await self._map(one, _chunks(list(indices), MAX_SEARCH_ITEMS))
        )

    async def log_info(self) -> LogInfo:
        """The log's tree heads, verified and checked for consistency."""
        return await self._run(self.flows.log_info())

    async def public_key(self) -> bytes:
        """The PEM key the log serves."""
        return await self._run(self.flows.public_key())

    async def consistency_proof(
        self, first_size: int, last_size: int, tree_id: int | None = None
    ) -> list[bytes]:
        """The log's consistency proof between two sizes."""
        return await self._run(self.flows.consistency_proof(first_size, last_size, tree_id))
