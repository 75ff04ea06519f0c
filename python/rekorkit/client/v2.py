"""Rekor v2 (rekor-tiles) clients: verified writes, and reads from tiles.

Writes are ``POST /api/v2/log/entries`` with a ``hashedRekordRequestV002``
(DSSE is logged as a hashedrekord over the PAE digest, REKOR_API.md §4.1).
The call blocks until a checkpoint covers the entry, so the write timeout is
long (:meth:`Timeouts.for_v2_writes`). A 409 carries ``x-log-index``; the
existing entry is then recovered from the tiles and verified like any other.
Checkpoint consistency is proven with proofs built from tiles
(:class:`rekorkit.tiles.ProofBuilder`), since v2 has no proof endpoint.

:class:`TileReader` and :class:`AsyncTileReader` are re-exported from
:mod:`rekorkit.client.tilereader`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from rekorkit import merkle
from rekorkit.canonical import (
    Verifier,
    canonicalize_v2,
    dsse_as_hashedrekord_v002_request,
    hashedrekord_v002_request,
)
from rekorkit.checkpoint import SignedCheckpoint
from rekorkit.client._flow import Flow, TileProof, adrive, drive
from rekorkit.client._http import RawResponse, RequestSpec
from rekorkit.client._session import AsyncSession, SyncSession
from rekorkit.client.backends import Backend
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.client.tilereader import (
    TILE_WIDTH,
    AsyncTileReader,
    TileReader,
    bundle_entry,
)
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.verification import (
    CheckpointCache,
    VerifyOptions,
    check_inclusion,
    read_checkpoint,
)
from rekorkit.dsse import Envelope
from rekorkit.entries import InclusionProof, TransparencyLogEntry
from rekorkit.errors import (
    ConflictError,
    InclusionError,
    MalformedError,
    NotFoundError,
    SignatureError,
)
from rekorkit.note import NoteVerifier
from rekorkit.trust import LogInstance, log_from_key, log_id_v2

__all__ = [
    "AsyncRekorV2Client",
    "AsyncTileReader",
    "RekorV2Client",
    "TileFetch",
    "TileReader",
    "V2Flows",
]


# Tiles a client keeps for building proofs: 1,024 x 8 KiB = 8 MiB at most.
TILE_CACHE = 1024
_PROOF_CACHE = 256


@dataclass(frozen=True, slots=True)
class TileFetch:
    """Ask the driver for raw tile-log data: ``"checkpoint"`` or ``"bundle"`` (index, width)."""

    kind: str
    index: int = 0
    width: int = TILE_WIDTH


class V2Flows:
    """The v2 operations as sans-I/O flows.

    Args:
        log: the log's key and ID (its ``log_id`` is checked against responses).
        verifier: the checkpoint verifier (default: ``log.verifier()``).
        options: which checks to run (``signed_entry_timestamp`` is moot: v2 has no SET).
        tracker: checkpoint memory, shareable between clients.
    """

    def __init__(
        self,
        log: LogInstance | None,
        *,
        verifier: NoteVerifier | None = None,
        options: VerifyOptions | None = None,
        tracker: CheckpointTracker | None = None,
    ) -> None:
        self.options = options or VerifyOptions()
        self.log = log
        self.verifier = verifier or (log.verifier() if log is not None else None)
        if self.options.checkpoint_signature and self.verifier is None:
            raise ValueError(
                "verification needs the log's checkpoint key: pass public_key=/log=/verifier=, "
                "or opt out with VerifyOptions().without('checkpoint_signature')"
            )
        self.tracker = tracker or CheckpointTracker()
        self._verified = CheckpointCache()

    def _proof(self, older: SignedCheckpoint, newer: SignedCheckpoint) -> Flow[list[bytes]]:
        if older.size == 0:
            return []
        hashes: list[bytes] = yield TileProof("consistency", newer.size, older.size)
        return hashes

    def _track(self, cp: SignedCheckpoint, baseline: dict[str, int]) -> Flow[None]:
        if self.options.consistency:
            yield from self.tracker.observe(
                cp, self._proof, baseline=baseline, refuse_stale=self.options.refuse_stale
            )

    def verify_entry(
        self, entry: TransparencyLogEntry, *, expected_body: bytes | None = None
    ) -> SignedCheckpoint | None:
        """Run the enabled checks on a v2 entry; return its verified checkpoint.

        Raises:
            InclusionError, CheckpointError, SignatureError: as the check that failed.
        """
        opts = self.options
        where = f"entry {entry.log_index}"
        leaf = merkle.leaf_hash(entry.canonicalized_body)
        if (
            expected_body is not None
            and opts.body_matches_request
            and entry.canonicalized_body != expected_body
        ):
            raise InclusionError(
                f"{where}: the logged body is not the canonical form of the request",
                expected=merkle.leaf_hash(expected_body).hex(),
                actual=leaf.hex(),
                index=entry.log_index,
            )
        if opts.checkpoint_signature and self.log is not None and entry.log_id != self.log.log_id:
            raise SignatureError(
                f"{where}: logId {entry.log_id.hex()} is not the configured log's "
                f"{self.log.log_id.hex()}",
                expected=self.log.log_id.hex(),
                actual=entry.log_id.hex(),
            )
        if not (opts.inclusion or opts.consistency or opts.checkpoint_signature):
            return None
        proof = entry.inclusion_proof
        if proof is None or not proof.checkpoint:
            raise InclusionError(
                f"{where}: the response carries no inclusion proof with a checkpoint",
                index=entry.log_index,
            )
        cp = read_checkpoint(proof.checkpoint, self.verifier, opts, self._verified)
        if opts.inclusion:
            # v2: the top-level index is the proof's index (REKOR_API.md §4.2).
            if proof.log_index != entry.log_index:
                raise InclusionError(
                    f"{where}: proof is for index {proof.log_index}",
                    expected=entry.log_index,
                    actual=proof.log_index,
                )
            check_inclusion(
                leaf,
                entry.log_index,
                proof.tree_size,
                list(proof.hashes),
                proof.root_hash,
                cp,
                where=where,
            )
        return cp

    def checkpoint(self) -> Flow[SignedCheckpoint]:
        """The log's current checkpoint, verified and chained to the last one seen."""
        baseline = self.tracker.snapshot()
        raw: bytes = yield TileFetch("checkpoint")
        cp = read_checkpoint(raw, self.verifier, self.options, self._verified)
        yield from self._track(cp, baseline)
        return cp

    def entry(
        self, index: int, *, expected_body: bytes | None = None
    ) -> Flow[TransparencyLogEntry]:
        """Entry ``index`` read from the tiles, with an inclusion proof built from them."""
        if index < 0:
            raise ValueError(f"log index must be >= 0, got {index}")
        cp = yield from self.checkpoint()
        if index >= cp.size:
            raise NotFoundError(
                f"index {index} is not in the log (checkpoint size {cp.size})", status=404
            )
        start = index - index % TILE_WIDTH
        width = min(TILE_WIDTH, cp.size - start)
        bundle: bytes = yield TileFetch("bundle", index // TILE_WIDTH, width)
        body = bundle_entry(bundle, index % TILE_WIDTH)
        proof: list[bytes] = yield TileProof("inclusion", cp.size, index)
        leaf = merkle.leaf_hash(body)
        if self.options.inclusion:
            check_inclusion(leaf, index, cp.size, proof, cp.root, cp, where=f"entry {index}")
        if (
            expected_body is not None
            and self.options.body_matches_request
            and body != expected_body
        ):
            raise InclusionError(
                f"entry {index} named by the 409 is not the submitted entry",
                expected=merkle.leaf_hash(expected_body).hex(),
                actual=leaf.hex(),
                index=index,
            )
        kind, version = _kind_version(body)
        return TransparencyLogEntry(
            log_index=index,
            log_id=self.log.log_id if self.log is not None else b"",
            kind=kind,
            version=version,
            integrated_time=0,
            inclusion_promise=None,
            inclusion_proof=InclusionProof(index, cp.size, cp.root, tuple(proof), cp.raw.decode()),
            canonicalized_body=body,
        )

    def submit(self, request: Mapping[str, Any]) -> Flow[TransparencyLogEntry]:
        """POST a v2 CreateEntryRequest; a 409 recovers the existing entry from tiles."""
        baseline = self.tracker.snapshot()
        expected = canonicalize_v2(request) if self.options.body_matches_request else None
        try:
            raw: RawResponse = yield RequestSpec(
                "POST", "api/v2/log/entries", json_body=dict(request), expect=frozenset({201})
            )
        except ConflictError as exc:
            if exc.log_index is None:
                raise
            return (yield from self.entry(exc.log_index, expected_body=expected))
        entry = TransparencyLogEntry.from_json(raw.json())
        cp = self.verify_entry(entry, expected_body=expected)
        if cp is not None:
            yield from self._track(cp, baseline)
        return entry


def _kind_version(body: bytes) -> tuple[str, str]:
    try:
        obj = json.loads(body)
        kind, version = obj["kind"], obj["apiVersion"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(
            f"entry body is not a Rekor entry: {exc!r}", what="entry body", where="kind"
        ) from exc
    if not isinstance(kind, str) or not isinstance(version, str):
        raise MalformedError("kind/apiVersion must be strings", what="entry body", where="kind")
    return kind, version


def _resolve(
    base_url: str | Sequence[str] | Backend,
    public_key: bytes | str | None,
    log: LogInstance | None,
    verifier: NoteVerifier | None,
    read_url: str | Sequence[str] | None,
) -> tuple[list[str], list[str], LogInstance | None]:
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
        log = log_from_key(urls[0], public_key, api_version=2)
        if verifier is not None:
            # The key name (= origin) may differ from the URL host, e.g. a local log.
            log = dataclasses.replace(log, log_id=log_id_v2(verifier.name, log.public_key))
    return urls, reads, log


class RekorV2Client:
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
        retry, write_timeout, read_timeout, http2, max_concurrency: HTTP settings.
        failover: a prepared :class:`Failover` for writes (else one over the URLs).
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
        write_timeout: Timeouts | None = None,
        read_timeout: Timeouts | None = None,
        http2: bool = False,
        max_concurrency: int = 16,
    ) -> None:
        urls, reads, log = _resolve(base_url, public_key, log, verifier, read_url)
        self.flows = V2Flows(log, verifier=verifier, options=verify, tracker=tracker)
        self._session = SyncSession(
            urls,
            transport=transport,
            retry=retry,
            failover=failover,
            timeout=write_timeout or Timeouts.for_v2_writes(),
            http2=http2,
            max_connections=max_concurrency,
        )
        self.tiles = TileReader(
            reads,
            transport=transport,
            retry=retry,
            timeout=read_timeout,
            http2=http2,
            max_concurrency=max_concurrency,
            cache_tiles=TILE_CACHE,
        )

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    def close(self) -> None:
        """Close the connections."""
        self._session.close()
        self.tiles.close()

    def __enter__(self) -> RekorV2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, op: Any) -> Any:
        if isinstance(op, RequestSpec):
            return self._session.request(op)
        if isinstance(op, TileFetch):
            if op.kind == "checkpoint":
                return self.tiles.checkpoint()
            return self.tiles.entry_bundle(op.index, op.width)
        if isinstance(op, TileProof):
            from rekorkit.tiles import ProofBuilder

            builder = ProofBuilder(op.size, self.tiles.read_tile)
            if op.kind == "inclusion":
                return builder.inclusion_proof(op.arg)
            return builder.consistency_proof(op.arg)
        raise TypeError(f"unknown flow operation {op!r}")

    def _run(self, flow: Flow[Any]) -> Any:
        return drive(flow, self._handle)

    def submit(self, request: Mapping[str, Any]) -> TransparencyLogEntry:
        """Log a v2 CreateEntryRequest; a duplicate returns the existing entry."""
        return self._run(self.flows.submit(request))  # type: ignore[no-any-return]

    def submit_hashedrekord(
        self, digest: bytes, signature: bytes, verifier: Verifier, *, key_details: str | None = None
    ) -> TransparencyLogEntry:
        """Log a signature over ``digest`` with its certificate or key."""
        return self.submit(
            hashedrekord_v002_request(digest, signature, verifier, key_details=key_details)
        )

    def submit_dsse(
        self, envelope: Envelope, verifier: Verifier, *, key_details: str | None = None
    ) -> TransparencyLogEntry:
        """Log a DSSE envelope as a hashedrekord over its PAE digest."""
        return self.submit(
            dsse_as_hashedrekord_v002_request(envelope, verifier, key_details=key_details)
        )

    def checkpoint(self) -> SignedCheckpoint:
        """The current checkpoint, verified and checked for consistency."""
        return self._run(self.flows.checkpoint())  # type: ignore[no-any-return]

    def entry(self, index: int) -> TransparencyLogEntry:
        """Entry ``index`` from the tiles, with a verified inclusion proof."""
        return self._run(self.flows.entry(index))  # type: ignore[no-any-return]


class AsyncRekorV2Client:
    """Awaitable twin of :class:`RekorV2Client`, with concurrent submission."""

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
        write_timeout: Timeouts | None = None,
        read_timeout: Timeouts | None = None,
        http2: bool = False,
        max_concurrency: int = 16,
    ) -> None:
        urls, reads, log = _resolve(base_url, public_key, log, verifier, read_url)
        self.flows = V2Flows(log, verifier=verifier, options=verify, tracker=tracker)
        self.max_concurrency = max_concurrency
        self._limit = anyio.CapacityLimiter(max_concurrency)
        self._session = AsyncSession(
            urls,
            transport=transport,
            retry=retry,
            failover=failover,
            timeout=write_timeout or Timeouts.for_v2_writes(),
            http2=http2,
            max_connections=max_concurrency,
        )
        self._proofs: dict[TileProof, list[bytes]] = {}
        self._pending: dict[TileProof, anyio.Event] = {}
        self.tiles = AsyncTileReader(
            reads,
            transport=transport,
            retry=retry,
            timeout=read_timeout,
            http2=http2,
            max_concurrency=max_concurrency,
            cache_tiles=TILE_CACHE,
        )

    @property
    def tracker(self) -> CheckpointTracker:
        """The latest verified checkpoint per origin."""
        return self.flows.tracker

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()
        await self.tiles.aclose()

    async def __aenter__(self) -> AsyncRekorV2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _handle(self, op: Any) -> Any:
        if isinstance(op, RequestSpec):
            return await self._session.request(op)
        if isinstance(op, TileFetch):
            if op.kind == "checkpoint":
                return await self.tiles.checkpoint()
            return await self.tiles.entry_bundle(op.index, op.width)
        if isinstance(op, TileProof):
            return await self._tile_proof(op)
        raise TypeError(f"unknown flow operation {op!r}")

    async def _tile_proof(self, op: TileProof) -> list[bytes]:
        """Build a proof once even when many concurrent flows ask for the same one."""
        from rekorkit.tiles import AsyncProofBuilder

        while True:
            if op in self._proofs:
                return self._proofs[op]
            pending = self._pending.get(op)
            if pending is None:
                break
            await pending.wait()  # then take the cached result, or build it if that failed
        event = self._pending[op] = anyio.Event()
        try:
            builder = AsyncProofBuilder(op.size, self.tiles.read_tile)
            if op.kind == "inclusion":
                proof = list(await builder.inclusion_proof(op.arg))
            else:
                proof = list(await builder.consistency_proof(op.arg))
            self._proofs[op] = proof
            while len(self._proofs) > _PROOF_CACHE:
                self._proofs.pop(next(iter(self._proofs)))
            return proof
        finally:
            del self._pending[op]
            event.set()

    async def _run(self, flow: Flow[Any]) -> Any:
        async with self._limit:
            return await adrive(flow, self._handle)

    async def submit(self, request: Mapping[str, Any]) -> TransparencyLogEntry:
        """Log a v2 CreateEntryRequest; a duplicate returns the existing entry."""
        return await self._run(self.flows.submit(request))  # type: ignore[no-any-return]

    async def submit_many(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[TransparencyLogEntry]:
        """Log many entries concurrently (bounded); results in input order."""
        results: list[Any] = [None] * len(requests)
        pending = iter(range(len(requests)))

        async def worker() -> None:
            for i in pending:
                results[i] = await self.submit(requests[i])

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(requests))):
                tg.start_soon(worker)
        return results

    async def submit_hashedrekord(
        self, digest: bytes, signature: bytes, verifier: Verifier, *, key_details: str | None = None
    ) -> TransparencyLogEntry:
        """Log a signature over ``digest`` with its certificate or key."""
        return await self.submit(
            hashedrekord_v002_request(digest, signature, verifier, key_details=key_details)
        )

    async def submit_dsse(
        self, envelope: Envelope, verifier: Verifier, *, key_details: str | None = None
    ) -> TransparencyLogEntry:
        """Log a DSSE envelope as a hashedrekord over its PAE digest."""
        return await self.submit(
            dsse_as_hashedrekord_v002_request(envelope, verifier, key_details=key_details)
        )

    async def checkpoint(self) -> SignedCheckpoint:
        """The current checkpoint, verified and checked for consistency."""
        return await self._run(self.flows.checkpoint())  # type: ignore[no-any-return]

    async def entry(self, index: int) -> TransparencyLogEntry:
        """Entry ``index`` from the tiles, with a verified inclusion proof."""
        return await self._run(self.flows.entry(index))  # type: ignore[no-any-return]
