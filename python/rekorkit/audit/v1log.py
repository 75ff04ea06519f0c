"""Bulk verification of a Rekor v1 log range (no tiles: the REST API).

For each shard (``inactiveShards`` oldest first, then the active one) the
engine verifies the shard's signed checkpoint and its consistency with the
last one stored for that origin (the log's ``/api/v1/log/proof``), then
fetches the entries of the range by index in search requests of at most 10
(the Rekor OpenAPI, searchLogQuery), many in flight at once, read straight into columns
(:class:`~rekorkit.entries.columns.LogEntryColumns`). Each window of entries is
checked with batch calls: leaf hashes in one native call, UUIDs against them,
every inclusion proof in one ``merkle.verify_inclusion_batch`` call, the
log IDs in one comparison and the SETs on one thread per core. Each distinct
checkpoint the proofs end in is verified once and proved consistent with the
shard's checkpoint. What verified is stored in order, like the tile engine.

The next windows are fetched while one is checked and stored, so the log
serves while the SETs (the bulk of the client's work) are verified
(:mod:`rekorkit.audit.v1_reads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization

from rekorkit import merkle
from rekorkit.audit.committer import OrderedCommitter
from rekorkit.audit.tilelog import ProgressCallback, RangeError, VerifyReport, check_consistency
from rekorkit.audit.v1_reads import COMMIT, read_windows
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint
from rekorkit.client.v1 import AsyncRekorV1Client
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries import set_payloads, verify_set_batch
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.errors import (
    CheckpointError,
    ConsistencyError,
    DivergenceError,
    InclusionError,
    SignatureError,
)
from rekorkit.note import NoteVerifier
from rekorkit.store import EntryStore, StoredCheckpoint
from rekorkit.store.duckdb import entry_batch

__all__ = ["verify_v1_log"]

log = logging.getLogger(__name__)

WINDOW = 512  # entries verified per batch call
# Requests in flight by default: Rekor v1 serves entries from one API server,
# not a CDN, so v1 reads stay at a fixed, polite number.
V1_CONCURRENCY = 16


def _public_key(verifier: NoteVerifier) -> tuple[Any, bytes | None]:
    """The log's key and its v1 log ID (the Rekor OpenAPI, logID), if the verifier has an SPKI."""
    spki = getattr(verifier, "spki", None)
    if spki is None:
        return None, None
    return serialization.load_der_public_key(spki), hashlib.sha256(spki).digest()


async def _consistent(
    client: AsyncRekorV1Client,
    old: SignedCheckpoint,
    new: SignedCheckpoint,
    tree_id: int,
) -> None:
    """Prove ``old`` (smaller) consistent with ``new`` using the log's proof."""
    if old.size == new.size:
        if old.root != new.root:
            raise DivergenceError(
                f"{new.origin}: two different roots for tree size {new.size}",
                old=old.raw.decode(),
                new=new.raw.decode(),
            )
        return
    a, b = (old, new) if old.size < new.size else (new, old)
    if a.size == 0:
        return
    proof = await client.consistency_proof(a.size, b.size, tree_id)
    try:
        merkle.verify_consistency(a.size, b.size, a.root, b.root, proof)
    except ConsistencyError as exc:
        raise DivergenceError(
            f"{new.origin}: checkpoints {a.size} and {b.size} are inconsistent: {exc}",
            old=a.raw.decode(),
            new=b.raw.decode(),
            old_size=a.size,
            new_size=b.size,
        ) from exc


def _checkpoint_rows(texts: list[str | None], known: list[str]) -> list[int]:
    """Each row's position in ``known``, appending the texts not known yet."""
    pos = {text: k for k, text in enumerate(known)}
    rows = []
    for text in texts:
        if text is None:
            raise CheckpointError("inclusion proof without a checkpoint")
        k = pos.get(text)
        if k is None:
            k = pos[text] = len(known)
            known.append(text)
        rows.append(k)
    return rows


async def _verify_window(
    client: AsyncRekorV1Client,
    verifier: NoteVerifier,
    public_key: Any,
    log_id: bytes | None,
    anchor: SignedCheckpoint,
    tree_id: int,
    seen: dict[str, SignedCheckpoint],
    cols: LogEntryColumns,
    local: np.ndarray,
) -> np.ndarray:
    """Verify a window of entries with batch calls; raise on the first failure.

    Returns the leaf hashes, ``(n, 32)``.
    """
    gidx = cols.log_indexes
    leaves = merkle.hash_leaves(cols.bodies)
    # UUIDs: the last 64 hex of each entryID must be the leaf hash.
    uuids = cols.uuids
    bad = np.flatnonzero(np.any(uuids != leaves, axis=1))
    if bad.size:
        i = int(bad[0])
        raise InclusionError(
            f"entry {int(gidx[i])}: UUID {cols.entry_ids[i][-64:]} "
            "is not the leaf hash of its body",
            entry_index=int(gidx[i]),
            expected=leaves[i].tobytes(),
            actual=uuids[i].tobytes(),
        )
    if not cols.has_proof.all():
        i = int(np.flatnonzero(~cols.has_proof)[0])
        raise InclusionError(
            f"entry {int(gidx[i])} has no inclusion proof", entry_index=int(gidx[i])
        )
    idx = cols.proof_indexes
    want = local.astype(np.uint64)
    if not np.array_equal(idx, want):
        i = int(np.flatnonzero(idx != want)[0])
        raise InclusionError(
            f"entry {int(gidx[i])}: proof is for shard index {int(idx[i])}, "
            f"expected {int(local[i])}",
            entry_index=int(gidx[i]),
        )
    # Each distinct checkpoint the proofs end in: signature once, consistency with the anchor.
    known = list(seen)
    try:
        rows = np.array(_checkpoint_rows(cols.checkpoints, known), np.intp)
    except CheckpointError as exc:
        exc.evidence.setdefault("entry_index", int(gidx[0]))
        raise
    for text in known[len(seen) :]:
        signed = open_checkpoint(text.encode(), verifier, origin=anchor.origin)
        await _consistent(client, anchor, signed, tree_id)
        seen[text] = signed
    cps = list(seen.values())
    sizes = np.array([c.size for c in cps], np.uint64)[rows]
    roots = np.frombuffer(b"".join(c.root for c in cps), np.uint8).reshape(-1, 32)[rows]
    off = np.flatnonzero((cols.tree_sizes != sizes) | np.any(cols.root_hashes != roots, axis=1))
    if off.size:
        i = int(off[0])
        raise CheckpointError(
            f"entry {int(gidx[i])}: inclusion proof (size {int(cols.tree_sizes[i])}) does not "
            f"end in its checkpoint (size {int(sizes[i])})",
            entry_index=int(gidx[i]),
            expected=roots[i].tobytes(),
            actual=cols.root_hashes[i].tobytes(),
        )
    result = merkle.verify_inclusion_batch(
        leaves, idx, cols.tree_sizes, cols.proof_hashes, cols.proof_offsets, cols.root_hashes
    )
    if not result.all_ok:
        i = int(result.first_failure or 0)
        raise InclusionError(
            f"entry {int(gidx[i])}: inclusion proof does not verify ({result.reason})",
            entry_index=int(gidx[i]),
            leaf_hash=leaves[i].tobytes(),
            root=cols.root_hashes[i].tobytes(),
            tree_size=int(cols.tree_sizes[i]),
        )
    if public_key is not None and log_id is not None:
        await _verify_sets(cols, public_key, log_id)
    return leaves


async def _verify_sets(cols: LogEntryColumns, public_key: Any, log_id: bytes) -> None:
    """The log ID and SET of every entry; SETs on one thread per core (no GIL in OpenSSL)."""
    gidx = cols.log_indexes
    other = np.flatnonzero(np.any(cols.log_ids != np.frombuffer(log_id, np.uint8), axis=1))
    if other.size:
        i = int(other[0])
        raise SignatureError(
            f"entry {int(gidx[i])}: logID {cols.log_ids[i].tobytes().hex()} is not "
            f"the log key's {log_id.hex()}",
            entry_index=int(gidx[i]),
            expected=log_id.hex(),
            actual=cols.log_ids[i].tobytes().hex(),
        )
    # the Rekor OpenAPI, InclusionPromise: the SET signs JCS {body, integratedTime, logID, logIndex}
    # (global).
    payloads = set_payloads(
        cols.bodies, cols.integrated_times.tolist(), log_id.hex(), gidx.tolist()
    )
    n = len(payloads)
    step = -(-n // max(1, min(os.cpu_count() or 1, n // 64)))
    results = await asyncio.gather(
        *(
            asyncio.to_thread(
                verify_set_batch, payloads[a : a + step], cols.sets[a : a + step], public_key
            )
            for a in range(0, n, step)
        )
    )
    ok = np.concatenate(results) if results else np.ones(0, np.bool_)
    if not bool(np.all(ok)):
        i = int(np.flatnonzero(~ok)[0])
        raise SignatureError(
            f"entry {int(gidx[i])}: signed entry timestamp does not verify",
            entry_index=int(gidx[i]),
        )


async def verify_v1_log(
    url: str,
    verifier: NoteVerifier,
    *,
    store: EntryStore | None = None,
    start: int | None = None,
    end: int | None = None,
    concurrency: int = V1_CONCURRENCY,
    window: int = WINDOW,
    progress: ProgressCallback | None = None,
    on_plan: Callable[[int, int, int], None] | None = None,
    client: AsyncRekorV1Client | None = None,
) -> VerifyReport:
    """Verify global indices ``[start, end)`` of a Rekor v1 log (all shards).

    Args:
        url: the log's API root.
        verifier: the log's checkpoint key (ECDSA for Rekor v1; it also checks SETs).
        store: where verified entries and checkpoints go (``None``: verify only).
        start: first global index (default: where the store left off, else 0).
        end: end, exclusive (default: the log's total size).
        concurrency: search requests in flight.
        window: entries verified per batch call.
        progress: called as ``progress(entries, nbytes)``.
        on_plan: called once as ``on_plan(start, end, entries_to_verify)``.
        client: a prepared client (tests); checks are done here, not by it.

    Raises:
        SignatureError, CheckpointError, InclusionError, DivergenceError: a check failed.
        RangeError: the range does not fit the log.
        RekorAPIError: the log could not be read (after retries).
    """
    t0 = time.perf_counter()
    own = client is None
    if client is None:
        client = AsyncRekorV1Client(url, verify=VerifyOptions.none(), max_concurrency=concurrency)
    public_key, log_id = _public_key(verifier)
    try:
        info = await client.log_info()
        shards = [*info.inactive_shards, info.active]
        signed = [open_checkpoint(s.checkpoint.raw, verifier) for s in shards]
        total = sum(s.tree_size for s in shards)
        anchor_origin = signed[-1].origin
        lo = (
            start
            if start is not None
            else (store.last_verified_size(anchor_origin) if store and len(shards) == 1 else 0)
        )
        hi = end if end is not None else total
        if not 0 <= lo <= hi <= total:
            raise RangeError(f"range [{lo}, {hi}) does not fit the log size {total}")
        plans = await _plan_shards(client, store, shards, signed, lo, hi)
        if on_plan is not None:
            on_plan(lo, hi, sum(g[1] - g[0] for plan in plans for g in plan.gaps))
        ordered = OrderedCommitter(store, commit_rows=COMMIT)
        verified = nbytes = 0
        try:
            for plan in plans:
                n, size = await _verify_shard(
                    client,
                    verifier,
                    public_key,
                    log_id,
                    plan,
                    ordered,
                    window,
                    concurrency,
                    progress,
                )
                verified += n
                nbytes += size
        except BaseException:
            # What verified before a failure is kept (the next run starts after it);
            # the failure stays the error raised.
            try:
                await ordered.close()
            except Exception:
                log.exception("storing the entries verified before the failure failed")
            raise
        await ordered.close()
        last = signed[-1]
        return VerifyReport(
            url=url,
            api="v1",
            origin=last.origin,
            start=lo,
            end=hi,
            entries=verified,
            nbytes=nbytes,
            checkpoint_size=last.size,
            root_hash=last.root,
            checkpoint=last.raw,
            previous_size=None,
            stored=ordered.stored,
            seconds=time.perf_counter() - t0,
        )
    finally:
        if own:
            await client.aclose()


@dataclass(frozen=True, slots=True)
class _ShardPlan:
    """One shard's part of the range: its signed checkpoint, global offset and gaps."""

    shard: Any
    checkpoint: SignedCheckpoint
    offset: int
    gaps: list[tuple[int, int]]


async def _plan_shards(
    client: AsyncRekorV1Client,
    store: EntryStore | None,
    shards: list[Any],
    signed: list[SignedCheckpoint],
    lo: int,
    hi: int,
) -> list[_ShardPlan]:
    """Check each shard's tree head and consistency; the shard-local gaps of ``[lo, hi)``."""
    plans = []
    offset = 0
    for shard, cp in zip(shards, signed, strict=True):
        if cp.size != shard.tree_size or cp.root != shard.root_hash:
            raise CheckpointError(
                f"shard {shard.tree_id}: tree head does not match its signed checkpoint",
                expected=cp.root,
                actual=shard.root_hash,
            )
        proof = None
        old = store.latest_checkpoint(cp.origin) if store else None
        if old is not None and 0 < old.size < cp.size:
            proof = await client.consistency_proof(old.size, cp.size, shard.tree_id)
        check_consistency(store, cp, proof)
        if store is not None:
            store.add_checkpoint(StoredCheckpoint(cp.origin, cp.size, cp.root, cp.raw))
        a, b = max(lo, offset) - offset, min(hi, offset + cp.size) - offset
        if a < b:
            gaps = store.missing_ranges(cp.origin, a, b) if store else [(a, b)]
            plans.append(_ShardPlan(shard, cp, offset, gaps))
        offset += cp.size
    return plans


async def _verify_shard(
    client: AsyncRekorV1Client,
    verifier: NoteVerifier,
    public_key: Any,
    log_id: bytes | None,
    plan: _ShardPlan,
    ordered: OrderedCommitter,
    window: int,
    concurrency: int,
    progress: ProgressCallback | None,
) -> tuple[int, int]:
    """Verify one shard's gaps window by window; hand verified entries to ``ordered``."""
    cp, offset = plan.checkpoint, plan.offset
    seen: dict[str, SignedCheckpoint] = {cp.raw.decode(): cp}
    spans = [(w, min(b, w + window)) for a, b in plan.gaps for w in range(a, b, window)]
    verified = nbytes = 0
    async with contextlib.aclosing(read_windows(client, spans, offset, concurrency)) as windows:
        async for a, b, cols in windows:
            local = np.arange(a, b, dtype=np.int64)
            leaves = await _verify_window(
                client, verifier, public_key, log_id, cp, plan.shard.tree_id, seen, cols, local
            )
            n = len(cols)
            size = sum(len(body) for body in cols.bodies)
            verified += n
            nbytes += size
            if ordered.store is not None:
                batch = entry_batch(
                    cp.origin,
                    a,
                    cols.bodies,
                    leaves,
                    checkpoint_size=cp.size,
                    integrated_time=cols.integrated_times,
                    global_index=local + offset,
                )
                await ordered.add(cp.origin, a, batch)
            if progress is not None:
                progress(n, size)
    return verified, nbytes
