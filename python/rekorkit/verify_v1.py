"""Bulk verification of a Rekor v1 log range (no tiles: the REST API).

For each shard (``inactiveShards`` oldest first, then the active one) the
engine verifies the shard's signed checkpoint and its consistency with the
last one stored for that origin (the log's ``/api/v1/log/proof``), then
fetches the entries of the range by index in search requests of at most 10
(REKOR_API.md §1.6), many in flight at once. Each window of entries is
checked with batch calls: leaf hashes in one native call, UUIDs against them,
every inclusion proof in one ``merkle.verify_inclusion_batch`` call, the SETs
with ``entries.verify_sets``. Each distinct checkpoint the proofs end in is
verified once and proved consistent with the shard's checkpoint. What
verified is stored in order, like the tile engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint
from rekorkit.client.v1 import AsyncRekorV1Client
from rekorkit.client.verification import VerifyOptions
from rekorkit.entries import LogEntry, verify_sets
from rekorkit.errors import (
    CheckpointError,
    ConsistencyError,
    DivergenceError,
    InclusionError,
    SignatureError,
)
from rekorkit.note import NoteVerifier
from rekorkit.store import StoredCheckpoint
from rekorkit.store.duckdb import DuckDBStore, entry_batch
from rekorkit.verify import ProgressCallback, RangeError, VerifyReport, check_consistency

__all__ = ["verify_v1_log"]

WINDOW = 2048  # entries fetched and verified per batch call


def _public_key(verifier: NoteVerifier) -> Any:
    spki = getattr(verifier, "spki", None)
    if spki is None:
        return None
    return serialization.load_der_public_key(spki)


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


async def _verify_window(
    client: AsyncRekorV1Client,
    verifier: NoteVerifier,
    public_key: Any,
    anchor: SignedCheckpoint,
    tree_id: int,
    seen: dict[bytes, SignedCheckpoint],
    entries: Sequence[LogEntry],
    local: np.ndarray,
) -> None:
    """Verify a window of entries with batch calls; raise on the first failure."""
    n = len(entries)
    bodies = [e.body for e in entries]
    leaves = merkle.hash_leaves(bodies)
    # UUIDs: the last 64 hex of each entryID must be the leaf hash.
    uuids = np.frombuffer(bytes.fromhex("".join(e.uuid for e in entries)), np.uint8).reshape(n, 32)
    bad = np.flatnonzero(np.any(uuids != leaves, axis=1))
    if bad.size:
        i = int(bad[0])
        raise InclusionError(
            f"entry {entries[i].log_index}: UUID {entries[i].uuid} "
            "is not the leaf hash of its body",
            entry_index=entries[i].log_index,
            expected=leaves[i].tobytes(),
            actual=uuids[i].tobytes(),
        )
    proofs = [e.inclusion_proof for e in entries]
    missing = [i for i, p in enumerate(proofs) if p is None]
    if missing:
        raise InclusionError(
            f"entry {entries[missing[0]].log_index} has no inclusion proof",
            entry_index=entries[missing[0]].log_index,
        )
    idx = np.array([p.log_index for p in proofs], np.uint64)  # type: ignore[union-attr]
    if not np.array_equal(idx, local.astype(np.uint64)):
        i = int(np.flatnonzero(idx != local.astype(np.uint64))[0])
        raise InclusionError(
            f"entry {entries[i].log_index}: proof is for shard index {int(idx[i])}, "
            f"expected {int(local[i])}",
            entry_index=entries[i].log_index,
        )
    # Each distinct checkpoint the proofs end in: signature once, consistency with the anchor.
    for p in proofs:
        text = p.checkpoint  # type: ignore[union-attr]
        if text is None:
            raise CheckpointError(
                "inclusion proof without a checkpoint", entry_index=entries[0].log_index
            )
        raw = text.encode()
        if raw not in seen:
            signed = open_checkpoint(raw, verifier, origin=anchor.origin)
            await _consistent(client, anchor, signed, tree_id)
            seen[raw] = signed
        cp = seen[raw]
        if cp.size != p.tree_size or cp.root != p.root_hash:  # type: ignore[union-attr]
            raise CheckpointError(
                f"inclusion proof (size {p.tree_size}) does not end in "  # type: ignore[union-attr]
                f"its checkpoint (size {cp.size})",
                expected=cp.root,
                actual=p.root_hash,  # type: ignore[union-attr]
            )
    sizes = np.array([p.tree_size for p in proofs], np.uint64)  # type: ignore[union-attr]
    roots = np.frombuffer(b"".join(p.root_hash for p in proofs), np.uint8).reshape(n, 32)  # type: ignore[union-attr]
    flat = [h for p in proofs for h in p.hashes]  # type: ignore[union-attr]
    offsets = np.zeros(n + 1, np.uint64)
    np.cumsum([len(p.hashes) for p in proofs], out=offsets[1:])  # type: ignore[union-attr]
    hashes = (
        np.frombuffer(b"".join(flat), np.uint8).reshape(-1, 32)
        if flat
        else np.zeros((0, 32), np.uint8)
    )
    result = merkle.verify_inclusion_batch(leaves, idx, sizes, hashes, offsets, roots)
    if not result.all_ok:
        i = int(result.first_failure or 0)
        raise InclusionError(
            f"entry {entries[i].log_index}: inclusion proof does not verify ({result.reason})",
            entry_index=entries[i].log_index,
            leaf_hash=leaves[i].tobytes(),
            root=roots[i].tobytes(),
            tree_size=int(sizes[i]),
        )
    if public_key is not None:
        ok = await asyncio.to_thread(verify_sets, list(entries), public_key, threads=None)
        if not bool(np.all(ok)):
            i = int(np.flatnonzero(~ok)[0])
            raise SignatureError(
                f"entry {entries[i].log_index}: signed entry timestamp does not verify",
                entry_index=entries[i].log_index,
            )


async def verify_v1_log(
    url: str,
    verifier: NoteVerifier,
    *,
    store: DuckDBStore | None = None,
    start: int | None = None,
    end: int | None = None,
    concurrency: int = 16,
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
    public_key = _public_key(verifier)
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
                plans.append((shard, cp, offset, gaps))
            offset += cp.size
        todo = sum(g[1] - g[0] for *_, gaps in plans for g in gaps)
        if on_plan is not None:
            on_plan(lo, hi, todo)
        verified = nbytes = stored = 0
        for shard, cp, offset, gaps in plans:
            seen: dict[bytes, SignedCheckpoint] = {cp.raw: cp}
            for a, b in gaps:
                for w in range(a, b, window):
                    local = np.arange(w, min(b, w + window), dtype=np.int64)
                    fetched = await client.get_entries([int(i) + offset for i in local])
                    await _verify_window(
                        client, verifier, public_key, cp, shard.tree_id, seen, fetched, local
                    )
                    n = len(fetched)
                    size = sum(len(e.body) for e in fetched)
                    verified += n
                    nbytes += size
                    if store is not None:
                        leaves = merkle.hash_leaves([e.body for e in fetched])
                        batch = entry_batch(
                            cp.origin,
                            int(local[0]),
                            [e.body for e in fetched],
                            leaves,
                            checkpoint_size=cp.size,
                            integrated_time=[e.integrated_time for e in fetched],
                            global_index=local + offset,
                        )
                        await asyncio.to_thread(
                            store.commit_entries,
                            cp.origin,
                            [batch],
                            start=int(local[0]),
                            end=int(local[-1]) + 1,
                        )
                        stored += n
                    if progress is not None:
                        progress(n, size)
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
            stored=stored,
            seconds=time.perf_counter() - t0,
        )
    finally:
        if own:
            await client.aclose()
