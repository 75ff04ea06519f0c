"""Rekor v2 (rekor-tiles) clients: verified writes, and reads from tiles.

Writes are ``POST /api/v2/log/entries`` with a ``hashedRekordRequestV002``
(DSSE is logged as a hashedrekord over the PAE digest, the rekor-tiles API).
The call blocks until a checkpoint covers the entry, so the default timeout
of writes is long (:meth:`Timeouts.for_v2_writes`). A 409 carries ``x-log-index``; the
existing entry is then recovered from the tiles and verified like any other.
Checkpoint consistency is proven with proofs built from tiles
(:class:`rekorkit.tiles.ProofBuilder`), since v2 has no proof endpoint.

:class:`TileReader` and :class:`AsyncTileReader` are re-exported from
:mod:`rekorkit.client.tilereader`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from cachetools import LRUCache

from rekorkit.checkpoint import SignedCheckpoint
from rekorkit.client._base import AsyncShell, SyncShell, resolve_endpoints
from rekorkit.client._flow import Observe, TileConsistencyProofs, TileProof, adrive
from rekorkit.client._http import RequestSpec
from rekorkit.client._session import HTTP2, SessionConfig
from rekorkit.client._v2_flows import TILE_CACHE, TileFetch, V2Flows
from rekorkit.client.backends import Backend
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.client.tilereader import AsyncTileReader, TileReader
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries import TransparencyLogEntry
from rekorkit.entries.canonical import (
    Verifier,
    dsse_as_hashedrekord_v002_request,
    hashedrekord_v002_request,
)
from rekorkit.entries.dsse import Envelope
from rekorkit.errors import DivergenceError
from rekorkit.note import NoteVerifier
from rekorkit.trust import LogInstance

__all__ = [
    "AsyncRekorV2Client",
    "AsyncTileReader",
    "RekorV2Client",
    "TileFetch",
    "TileReader",
    "V2Flows",
]

# Tile proofs an async client remembers, so concurrent flows share one build.
_PROOF_CACHE = 256


def _dsse_request(
    envelope: Envelope, verifiers: Sequence[Verifier], key_details: str | None
) -> dict[str, Any]:
    if len(verifiers) != 1:
        raise ValueError(
            "Rekor v2 logs one signature of a DSSE envelope (a hashedrekord over its PAE): "
            f"pass one verifier, got {len(verifiers)}"
        )
    return dsse_as_hashedrekord_v002_request(envelope, verifiers[0], key_details=key_details)


@dataclasses.dataclass(frozen=True, slots=True)
class _Setup:
    """What both v2 clients build from their constructor's arguments."""

    urls: list[str]
    reads: list[str]
    flows: V2Flows
    writes: SessionConfig
    tile_reads: SessionConfig


def _setup(
    base_url: str | Sequence[str] | Backend,
    public_key: bytes | str | None,
    log: LogInstance | None,
    verifier: NoteVerifier | None,
    read_url: str | Sequence[str] | None,
    verify: VerifyOptions | None,
    tracker: CheckpointTracker | None,
    config: SessionConfig,
) -> _Setup:
    ends = resolve_endpoints(
        base_url,
        api_version=2,
        public_key=public_key,
        log=log,
        verifier=verifier,
        read_url=read_url,
    )
    flows = V2Flows(ends.log, verifier=verifier, options=verify, tracker=tracker)
    # One timeout for every request; unset, writes wait for the log's batch
    # (Timeouts.for_v2_writes) and tile reads keep the reader's default. The
    # failover is the writes'; the tile prefixes get their own.
    writes = dataclasses.replace(
        config, timeout=Timeouts.of(config.timeout, Timeouts.for_v2_writes())
    )
    return _Setup(ends.urls, ends.reads, flows, writes, dataclasses.replace(config, failover=None))


_Reader = TypeVar("_Reader", TileReader, AsyncTileReader)


def _tile_reader(cls: type[_Reader], setup: _Setup, transport: Any) -> _Reader:
    """The client's tile reader, remembering :data:`TILE_CACHE` tiles."""
    c = setup.tile_reads
    return cls(
        setup.reads,
        transport=transport,
        retry=c.retry,
        timeout=c.timeout,
        http2=c.http2,
        max_concurrency=c.max_concurrency,
        trust_env=c.trust_env,
        cache_tiles=TILE_CACHE,
    )


_Outcome = DivergenceError | None
_RunRound = Callable[[list[tuple[SignedCheckpoint, int]]], Awaitable[list[_Outcome]]]


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    checkpoint: SignedCheckpoint
    floor: int
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    done: bool = False
    error: BaseException | None = None


class _ObserveRounds:
    """Checkpoints from requests in flight, accepted into the tracker in rounds.

    Each response of a growing log carries a new checkpoint. While one round
    builds its proofs, the checkpoints that arrive queue up; the next round
    takes them all, and proves them all to the largest one with one set of
    tiles (``CheckpointTracker.observe_many``), instead of one set of tiles
    per response. A round is run by one of the waiting callers, not a
    background task: it hands out every outcome, then wakes the next caller
    queued. A tree head accepted before needs no round.
    """

    def __init__(self, run: _RunRound, accepted: Callable[[SignedCheckpoint], bool]) -> None:
        self._run = run
        self._accepted = accepted
        self._queue: list[_Waiter] = []
        self._leading = False

    async def observe(self, checkpoint: SignedCheckpoint, floor: int) -> None:
        """Return once ``checkpoint`` is accepted; raise its DivergenceError otherwise."""
        if self._accepted(checkpoint):
            [refused] = await self._run([(checkpoint, floor)])  # no proof: the floor check only
            if refused is not None:
                raise refused
            return
        me = _Waiter(checkpoint, floor)
        self._queue.append(me)
        while not me.done:
            if self._leading:
                me.wake = asyncio.Event()
                try:
                    await me.wake.wait()
                except BaseException:
                    if me in self._queue:
                        self._queue.remove(me)
                    if not self._leading:
                        self._wake_next()  # it may have been woken to lead
                    raise
                continue
            await self._lead(me)
        if me.error is not None:
            raise me.error

    async def _lead(self, me: _Waiter) -> None:
        self._leading = True
        batch, self._queue = self._queue, []
        outcomes: list[BaseException | None]
        try:
            outcomes = list(await self._run([(w.checkpoint, w.floor) for w in batch]))
        except Exception as exc:  # e.g. a tile read failed: every caller in the round hears it
            outcomes = [exc] * len(batch)
        except BaseException:
            self._queue[:0] = [w for w in batch if w is not me]  # cancelled: the rest go again
            self._leading = False
            self._wake_next()
            raise
        self._leading = False
        for w, outcome in zip(batch, outcomes, strict=True):
            w.done, w.error = True, outcome
            w.wake.set()
        self._wake_next()

    def _wake_next(self) -> None:
        if self._queue:
            self._queue[0].wake.set()


class RekorV2Client(SyncShell):
    """Blocking Rekor v2 client: verified writes, verified reads from tiles.

    Args:
        base_url: the shard's write URL, mirrors, or a :class:`Backend`.
        public_key: the log's checkpoint key (PEM/DER); or pass ``log``.
        log: the log's :class:`LogInstance`.
        verifier: the checkpoint verifier, if its name is not the URL host.
        read_url: the tile prefix (default: the base URL).
        verify: which checks to run.
        tracker: checkpoint memory to share.
        transport: httpx transport for writes and reads (tests).
        retry: the retry policy (default :class:`RetryPolicy`).
        failover: a prepared :class:`Failover` for writes (else one over the URLs).
        timeout: seconds per request (the deadline), or :class:`Timeouts`, for
            writes and tile reads; unset, writes get :meth:`Timeouts.for_v2_writes`
            and reads :class:`Timeouts`' defaults.
        http2: ``"auto"`` (default) offers HTTP/2 over TLS when ``h2`` is installed;
            ``True`` requires it (the ``http2`` extra), ``False`` never uses it.
        max_concurrency: the most requests in flight (each connection pool's size).
        trust_env: honour proxy and CA variables from the environment, as httpx does.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | Backend,
        *,
        public_key: bytes | str | None = None,
        log: LogInstance | None = None,
        verifier: NoteVerifier | None = None,
        read_url: str | Sequence[str] | None = None,
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
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        setup = _setup(base_url, public_key, log, verifier, read_url, verify, tracker, config)
        self.flows = setup.flows
        super().__init__(setup.urls, setup.writes, transport=transport)
        self.tiles = _tile_reader(TileReader, setup, transport)

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    def close(self) -> None:
        """Close the connections."""
        super().close()
        self.tiles.close()

    def _handle(self, op: object) -> object:
        if isinstance(op, TileFetch):
            if op.kind == "checkpoint":
                return self.tiles.checkpoint()
            return self.tiles.entry_bundle(op.index, op.width)
        if isinstance(op, Observe):
            [refused] = self._run(self.flows.observe_many([(op.checkpoint, op.floor)]))
            if refused is not None:
                raise refused
            return None
        if isinstance(op, TileConsistencyProofs | TileProof):
            from rekorkit.tiles import ProofBuilder

            builder = ProofBuilder(op.size, self.tiles.read_tile)
            if isinstance(op, TileConsistencyProofs):
                return builder.consistency_proofs(op.old_sizes)
            if op.kind == "inclusion":
                return builder.inclusion_proof(op.arg)
            return builder.consistency_proof(op.arg)
        return super()._handle(op)

    def submit(self, request: Mapping[str, Any]) -> TransparencyLogEntry:
        """Log a v2 CreateEntryRequest; a duplicate returns the existing entry."""
        return self._run(self.flows.submit(request))

    def submit_many(self, requests: Sequence[Mapping[str, Any]]) -> list[TransparencyLogEntry]:
        """Log many entries, one after the other; results in input order."""
        return [self.submit(r) for r in requests]

    def submit_hashedrekord(
        self,
        *,
        digest: bytes,
        signature: bytes,
        verifier: Verifier,
        key_details: str | None = None,
    ) -> TransparencyLogEntry:
        """Log a signature over ``digest`` with its certificate or key."""
        return self.submit(
            hashedrekord_v002_request(digest, signature, verifier, key_details=key_details)
        )

    def submit_dsse(
        self,
        envelope: Envelope,
        *,
        verifiers: Sequence[Verifier],
        key_details: str | None = None,
    ) -> TransparencyLogEntry:
        """Log a DSSE envelope as a hashedrekord over its PAE digest (one verifier)."""
        return self.submit(_dsse_request(envelope, verifiers, key_details))

    def checkpoint(self) -> SignedCheckpoint:
        """The current checkpoint, verified and checked for consistency."""
        return self._run(self.flows.checkpoint())

    def get_entry(self, index: int) -> TransparencyLogEntry:
        """Entry ``index`` from the tiles, with a verified inclusion proof."""
        return self._run(self.flows.entry(index))


class AsyncRekorV2Client(AsyncShell):
    """Awaitable twin of :class:`RekorV2Client`, with concurrent submission.

    Args: as :class:`RekorV2Client`. At most ``max_concurrency`` writes are in
    flight; up to as many more answered ones are being checked meanwhile.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | Backend,
        *,
        public_key: bytes | str | None = None,
        log: LogInstance | None = None,
        verifier: NoteVerifier | None = None,
        read_url: str | Sequence[str] | None = None,
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
        config = SessionConfig(retry, failover, timeout, http2, max_concurrency, trust_env)
        setup = _setup(base_url, public_key, log, verifier, read_url, verify, tracker, config)
        self.flows = setup.flows
        # Flows are bounded by twice the writes in flight, so the checks on
        # answered writes overlap the next writes instead of holding their
        # slots (memory stays bounded by the concurrency).
        super().__init__(setup.urls, setup.writes, transport=transport, flows_per_request=2)
        self._writes = asyncio.Semaphore(max_concurrency)
        self._proofs: LRUCache[TileProof, list[bytes]] = LRUCache(maxsize=_PROOF_CACHE)
        self._pending: dict[TileProof, asyncio.Event] = {}
        self._rounds = _ObserveRounds(
            lambda items: adrive(self.flows.observe_many(items), self._handle),
            self.flows.tracker.accepted,
        )
        self.tiles = _tile_reader(AsyncTileReader, setup, transport)

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    async def aclose(self) -> None:
        """Close the connections."""
        await super().aclose()
        await self.tiles.aclose()

    async def _handle(self, op: object) -> object:
        if isinstance(op, RequestSpec):
            async with self._writes:
                raw = await self._session.request(op)
            # A log answers a whole batch of writes at once: let a flow waiting
            # for this slot send its write before this one checks its answer, so
            # the writes land together in the log's next batch.
            await asyncio.sleep(0)
            return raw
        if isinstance(op, TileFetch):
            if op.kind == "checkpoint":
                return await self.tiles.checkpoint()
            return await self.tiles.entry_bundle(op.index, op.width)
        if isinstance(op, Observe):
            await self._rounds.observe(op.checkpoint, op.floor)
            return None
        if isinstance(op, TileConsistencyProofs):
            from rekorkit.tiles import AsyncProofBuilder

            builder = AsyncProofBuilder(op.size, self.tiles.read_tile)
            return await builder.consistency_proofs(op.old_sizes)
        if isinstance(op, TileProof):
            return await self._tile_proof(op)
        return await super()._handle(op)

    async def _tile_proof(self, op: TileProof) -> list[bytes]:
        """Build a proof once even when many concurrent flows ask for the same one."""
        from rekorkit.tiles import AsyncProofBuilder

        while True:
            cached = self._proofs.get(op)
            if cached is not None:
                return cached
            pending = self._pending.get(op)
            if pending is None:
                break
            await pending.wait()  # then take the cached result, or build it if that failed
        event = self._pending[op] = asyncio.Event()
        try:
            builder = AsyncProofBuilder(op.size, self.tiles.read_tile)
            if op.kind == "inclusion":
                proof = list(await builder.inclusion_proof(op.arg))
            else:
                proof = list(await builder.consistency_proof(op.arg))
            self._proofs[op] = proof
            return proof
        finally:
            del self._pending[op]
            event.set()

    async def submit(self, request: Mapping[str, Any]) -> TransparencyLogEntry:
        """Log a v2 CreateEntryRequest; a duplicate returns the existing entry."""
        return await self._run(self.flows.submit(request))

    async def submit_many(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[TransparencyLogEntry]:
        """Log many entries concurrently; results in input order.

        At most ``max_concurrency`` writes are in flight; up to as many more
        answered ones are being checked meanwhile.
        """
        return await self._map(self.submit, requests, width=2)

    async def submit_hashedrekord(
        self,
        *,
        digest: bytes,
        signature: bytes,
        verifier: Verifier,
        key_details: str | None = None,
    ) -> TransparencyLogEntry:
        """Log a signature over ``digest`` with its certificate or key."""
        return await self.submit(
            hashedrekord_v002_request(digest, signature, verifier, key_details=key_details)
        )

    async def submit_dsse(
        self,
        envelope: Envelope,
        *,
        verifiers: Sequence[Verifier],
        key_details: str | None = None,
    ) -> TransparencyLogEntry:
        """Log a DSSE envelope as a hashedrekord over its PAE digest (one verifier)."""
        return await self.submit(_dsse_request(envelope, verifiers, key_details))

    async def checkpoint(self) -> SignedCheckpoint:
        """The current checkpoint, verified and checked for consistency."""
        return await self._run(self.flows.checkpoint())

    async def get_entry(self, index: int) -> TransparencyLogEntry:
        """Entry ``index`` from the tiles, with a verified inclusion proof."""
        return await self._run(self.flows.entry(index))
