"""The two client shells: one blocking, one awaitable, both driving sans-I/O flows.

Every client (v1, v2, the tile readers) is one of these around a session: its
operations are flows (:mod:`rekorkit.client._flow`), and the shell's typed
``_run(flow: Flow[T]) -> T`` answers what they yield. A shell knows how to
answer a :class:`~rekorkit.client._http.RequestSpec`; a client with more kinds
of operation (tile reads, proofs) extends ``_handle``. The async shell also
owns the one bounded-concurrency map the batch calls use, and
:func:`resolve_endpoints` turns what a caller passed (a URL, mirrors, a
:class:`~rekorkit.client.backends.Backend`, a key) into URLs and a log.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, Self, TypeVar, overload

import httpx

from rekorkit.client._flow import Flow, adrive, drive
from rekorkit.client._http import RequestSpec
from rekorkit.client._session import AsyncSession, SessionConfig, SyncSession
from rekorkit.client.backends import Backend
from rekorkit.note import NoteVerifier
from rekorkit.trust import LogInstance, log_from_key, log_id_v2

__all__ = ["AsyncShell", "Endpoints", "SyncShell", "bounded_map", "resolve_endpoints"]

T = TypeVar("T")
A = TypeVar("A")


class SyncShell:
    """A blocking client: a :class:`SyncSession` and the driver for its flows.

    Args:
        base_url: the backend URLs, in failover order.
        config: how the session connects.
        transport: an httpx transport (``MockTransport`` in tests).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        config: SessionConfig,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._session = SyncSession(base_url, config, transport=transport)

    def _handle(self, op: object) -> object:
        if isinstance(op, RequestSpec):
            return self._session.request(op)
        raise TypeError(f"unknown flow operation {op!r}")

    def _run(self, flow: Flow[T]) -> T:
        return drive(flow, self._handle)

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncShell:
    """An awaitable client: an :class:`AsyncSession`, the driver, a bound on flows.

    Args:
        base_url: the backend URLs, in failover order.
        config: how the session connects; its ``max_concurrency`` is the most
            requests in flight.
        transport: an httpx transport (``MockTransport`` in tests).
        flows_per_request: flows running at once per request slot (above 1,
            checks on answered requests overlap the next requests).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        config: SessionConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        flows_per_request: int = 1,
    ) -> None:
        max_concurrency = config.max_concurrency
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._session = AsyncSession(base_url, config, transport=transport)
        self.max_concurrency = max_concurrency
        self._flows = asyncio.Semaphore(flows_per_request * max_concurrency)

    async def _handle(self, op: object) -> object:
        if isinstance(op, RequestSpec):
            return await self._session.request(op)
        raise TypeError(f"unknown flow operation {op!r}")

    async def _run(self, flow: Flow[T]) -> T:
        async with self._flows:
            return await adrive(flow, self._handle)

    async def _map(
        self, fn: Callable[[A], Awaitable[T]], items: Sequence[A], *, width: int = 1
    ) -> list[T]:
        return await bounded_map(fn, items, width * self.max_concurrency)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@overload
async def bounded_map(
    fn: Callable[[A], Awaitable[T]],
    items: Iterable[A],
    limit: int,
    *,
    return_exceptions: Literal[False] = ...,
) -> list[T]: ...
@overload
async def bounded_map(
    fn: Callable[[A], Awaitable[T]], items: Iterable[A], limit: int, *, return_exceptions: bool
) -> list[T | Exception]: ...
async def bounded_map(
    fn: Callable[[A], Awaitable[T]],
    items: Iterable[A],
    limit: int,
    *,
    return_exceptions: bool = False,
) -> list[T] | list[T | Exception]:
    """``[await fn(x) for x in items]`` with at most ``limit`` calls at once, in input order.

    A fixed pool of workers, not one task per item: memory stays bounded by
    the limit, not by the number of items. A failure stops the workers taking
    new items and is raised as itself (the first in input order), not wrapped
    in an exception group; with ``return_exceptions`` each failure takes its
    item's place instead, as with :func:`asyncio.gather`.
    """
    work = list(items)
    results: list[Any] = [None] * len(work)
    pending = iter(range(len(work)))
    failed: list[int] = []

    async def worker() -> None:
        for i in pending:
            try:
                results[i] = await fn(work[i])
            except Exception as exc:
                results[i] = exc
                if not return_exceptions:
                    failed.append(i)
                    return

    if len(work) == 1:
        await worker()  # one call: no task group
    elif work:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(limit, len(work))):
                tg.create_task(worker())
    if failed:
        raise results[min(failed)]
    return results


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a client sends its requests, and the log it expects to answer.

    Attributes:
        urls: the API base URLs, in failover order.
        reads: the tile-read prefixes (v2; the API URLs unless given).
        log: the log's key and ID, when a key was given.
    """

    urls: list[str]
    reads: list[str]
    log: LogInstance | None


def resolve_endpoints(
    base_url: str | Sequence[str] | Backend,
    *,
    api_version: int,
    public_key: bytes | str | None = None,
    log: LogInstance | None = None,
    verifier: NoteVerifier | None = None,
    read_url: str | Sequence[str] | None = None,
) -> Endpoints:
    """The URLs and the log of a client, from its constructor's arguments.

    Explicit arguments win over a :class:`Backend`'s. A v2 log named by a
    ``verifier`` whose key name is not the URL host (a local log) gets its log
    ID from that name (the rekor-tiles API: the log ID hashes the origin).
    """
    if isinstance(base_url, Backend):
        urls = list(base_url.urls)
        public_key = public_key or base_url.public_key
        read_url = read_url or base_url.read_url
    else:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
    reads = (
        urls if read_url is None else ([read_url] if isinstance(read_url, str) else list(read_url))
    )
    if log is None and public_key is not None:
        log = log_from_key(urls[0], public_key, api_version=api_version)
        if api_version == 2 and verifier is not None:
            log = dataclasses.replace(log, log_id=log_id_v2(verifier.name, log.public_key))
    return Endpoints(urls, reads, log)
