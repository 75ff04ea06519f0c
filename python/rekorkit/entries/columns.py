"""Many Rekor v1 LogEntries as columns, for checks that run in batch calls.

A range audit reads thousands of LogEntries (the Rekor OpenAPI, LogEntry) and checks
them with batch calls: leaf hashes in one native call, every inclusion proof
in another, SETs on a thread pool. :class:`LogEntryColumns` holds what those
calls take (bodies, numpy arrays of indices, sizes, roots, the proofs back
to back) and is read from the JSON in one pass that joins every hex string
of a response and decodes it at once.

Parsing is exact, not lenient: anything the fast pass does not accept is
read again entry by entry with :meth:`LogEntry.from_json`, whose
:class:`~rekorkit.errors.MalformedError` names the entry and field.
"""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rekorkit.entries import InclusionProof, LogEntry
from rekorkit.errors import MalformedError

__all__ = ["LogEntryColumns"]

_HEX = re.compile(r"[0-9a-fA-F]*")
_I64 = 1 << 63
_WHAT = "log entry"


def _ints(values: list[Any]) -> npt.NDArray[np.int64]:
    """Non-negative int64 values (bool and anything else refused) as an array."""
    if not values:
        return np.zeros(0, np.int64)
    if set(map(type, values)) != {int} or min(values) < 0 or max(values) >= _I64:
        raise ValueError("not a non-negative int64")
    return np.array(values, dtype=np.int64)


def _hex32(values: list[Any]) -> npt.NDArray[np.uint8]:
    """Strings of exactly 64 hex characters as an ``(n, 32)`` array (one decode)."""
    if not values:
        return np.zeros((0, 32), np.uint8)
    if set(map(len, values)) != {64}:  # TypeError for non-strings
        raise ValueError("not 64 characters")
    raw = bytes.fromhex("".join(values))
    # fromhex skips whitespace; a string carrying any would come up short.
    if len(raw) != 32 * len(values):
        raise ValueError("not hex")
    return np.frombuffer(raw, np.uint8).reshape(-1, 32)


@dataclass(frozen=True, slots=True, repr=False)
class LogEntryColumns:
    """``n`` v1 LogEntries, column by column (row ``i`` is entry ``i``).

    Entries without an inclusion proof have ``has_proof[i]`` false, zero
    index, size and root, no proof hashes and no checkpoint.

    Attributes:
        entry_ids: each response key (64 or 80 hex, as sent).
        bodies: each canonical body (the Merkle leaf).
        integrated_times: ``(n,)`` int64 Unix seconds.
        log_ids: ``(n, 32)`` uint8 shard log IDs.
        log_indexes: ``(n,)`` int64 global (virtual) indices.
        has_proof: ``(n,)`` bool, whether the entry carries an inclusion proof.
        proof_indexes: ``(n,)`` uint64 shard-local leaf indices of the proofs.
        tree_sizes: ``(n,)`` uint64 tree sizes of the proofs.
        root_hashes: ``(n, 32)`` uint8 roots of the proofs.
        proof_hashes: ``(m, 32)`` uint8, every audit path back to back.
        proof_offsets: ``(n + 1,)`` uint64: proof ``i`` is
            ``proof_hashes[proof_offsets[i]:proof_offsets[i + 1]]``.
        checkpoints: each proof's signed checkpoint text, if any.
        sets: each signed entry timestamp, if any.
    """

    entry_ids: list[str]
    bodies: list[bytes]
    integrated_times: npt.NDArray[np.int64]
    log_ids: npt.NDArray[np.uint8]
    log_indexes: npt.NDArray[np.int64]
    has_proof: npt.NDArray[np.bool_]
    proof_indexes: npt.NDArray[np.uint64]
    tree_sizes: npt.NDArray[np.uint64]
    root_hashes: npt.NDArray[np.uint8]
    proof_hashes: npt.NDArray[np.uint8]
    proof_offsets: npt.NDArray[np.uint64]
    checkpoints: list[str | None]
    sets: list[bytes | None]

    def __len__(self) -> int:
        return len(self.entry_ids)

    def __repr__(self) -> str:
        # The generated repr would print every body and hash (asyncio reprs task results).
        return f"<LogEntryColumns of {len(self)} entries>"

    @property
    def uuids(self) -> npt.NDArray[np.uint8]:
        """``(n, 32)``: the UUID part (last 64 hex) of each entry ID, decoded."""
        return _hex32([e[-64:] for e in self.entry_ids])

    # -- reading ------------------------------------------------------------------
    @classmethod
    def from_json(cls, items: Sequence[Any], *, source: str = "response") -> LogEntryColumns:
        """Parse LogEntry objects (``{entryID: {...}}``, as a search returns them).

        A search hit may bundle several ``{id: entry}`` pairs in one object;
        each pair is one row.

        Raises:
            MalformedError: naming the item, entry and field.
        """
        try:
            return cls._fast(items)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            pass
        entries = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not item:
                raise MalformedError(
                    f"{source}: item {i} is not a LogEntry object", what=_WHAT, where=f"[{i}]"
                )
            for key, value in item.items():
                try:
                    entries.append(LogEntry.from_json({key: value}))
                except MalformedError as exc:
                    where = f"[{i}].{exc.where}" if exc.where else f"[{i}]"
                    raise MalformedError(
                        f"{source}: item {i}: {exc}", what=_WHAT, where=where
                    ) from exc
        return cls.from_entries(entries, source=source)

    @classmethod
    def _fast(cls, items: Sequence[Any]) -> LogEntryColumns:
        """The one-pass reader; raises a builtin error on anything unusual.

        Like fields are gathered into one list each, so a response costs a
        handful of array conversions, not a few per field.
        """
        a2b = binascii.a2b_base64
        ids: list[str] = []
        bodies: list[bytes] = []
        times: list[Any] = []
        indexes: list[Any] = []
        p_index: list[Any] = []
        p_size: list[Any] = []
        log_ids: list[Any] = []
        roots: list[Any] = []
        hashes: list[Any] = []
        counts: list[int] = []
        cps: list[str | None] = []
        sets: list[bytes | None] = []
        for item in items:
            if not item:
                raise ValueError("empty item")
            for eid, e in item.items():
                ver = e["verification"]
                p = ver["inclusionProof"]
                cp = p["checkpoint"]
                h = p["hashes"]
                if type(cp) is not str or not cp or type(h) is not list or "attestation" in e:
                    raise ValueError("unusual entry")
                ids.append(eid)
                bodies.append(a2b(e["body"], strict_mode=True))
                sets.append(a2b(ver["signedEntryTimestamp"], strict_mode=True))
                times.append(e["integratedTime"])
                indexes.append(e["logIndex"])
                p_index.append(p["logIndex"])
                p_size.append(p["treeSize"])
                log_ids.append(e["logID"])
                roots.append(p["rootHash"])
                hashes += h
                counts.append(len(h))
                cps.append(cp)
        n = len(ids)
        if set(map(len, ids)) - {64, 80} or not _HEX.fullmatch("".join(ids)):
            raise ValueError("entry ID")
        nums = _ints(times + indexes + p_index + p_size).reshape(4, n)
        raw = _hex32(log_ids + roots + hashes)
        offsets = np.fromiter(itertools.accumulate(counts, initial=0), np.uint64, n + 1)
        return cls(
            entry_ids=ids,
            bodies=bodies,
            integrated_times=nums[0],
            log_ids=raw[:n],
            log_indexes=nums[1],
            has_proof=np.ones(n, np.bool_),
            proof_indexes=nums[2].astype(np.uint64),
            tree_sizes=nums[3].astype(np.uint64),
            root_hashes=raw[n : 2 * n],
            proof_hashes=raw[2 * n :],
            proof_offsets=offsets,
            checkpoints=cps,
            sets=sets,
        )

    @classmethod
    def from_entries(
        cls, entries: Iterable[LogEntry], *, source: str = "entries"
    ) -> LogEntryColumns:
        """Columns of parsed entries.

        Raises:
            MalformedError: a log ID, root or proof hash that is not 32 bytes.
        """
        rows = list(entries)
        n = len(rows)
        proofs = [e.inclusion_proof for e in rows]
        for e, p in zip(rows, proofs, strict=True):
            where = f"{source}: entry {e.log_index}"
            if len(e.log_id) != 32:
                raise MalformedError(f"{where}: logID is not 32 bytes", what=_WHAT, where="logID")
            if p is not None and (len(p.root_hash) != 32 or any(len(h) != 32 for h in p.hashes)):
                raise MalformedError(
                    f"{where}: inclusion proof hashes must be 32 bytes",
                    what=_WHAT,
                    where="verification.inclusionProof",
                )
        offsets = np.zeros(n + 1, np.uint64)
        np.cumsum([len(p.hashes) if p else 0 for p in proofs], out=offsets[1:])
        flat = b"".join(h for p in proofs if p for h in p.hashes)
        zero = bytes(32)
        return cls(
            entry_ids=[e.entry_id for e in rows],
            bodies=[e.body for e in rows],
            integrated_times=np.array([e.integrated_time for e in rows], np.int64),
            log_ids=_rows32(b"".join(e.log_id for e in rows)),
            log_indexes=np.array([e.log_index for e in rows], np.int64),
            has_proof=np.array([p is not None for p in proofs], np.bool_),
            proof_indexes=np.array([p.log_index if p else 0 for p in proofs], np.uint64),
            tree_sizes=np.array([p.tree_size if p else 0 for p in proofs], np.uint64),
            root_hashes=_rows32(b"".join(p.root_hash if p else zero for p in proofs)),
            proof_hashes=_rows32(flat),
            proof_offsets=offsets,
            checkpoints=[p.checkpoint if p else None for p in proofs],
            sets=[e.signed_entry_timestamp for e in rows],
        )

    # -- rows -----------------------------------------------------------------------
    def entry(self, i: int) -> LogEntry:
        """Row ``i`` as a :class:`LogEntry`."""
        proof = None
        if self.has_proof[i]:
            a, b = int(self.proof_offsets[i]), int(self.proof_offsets[i + 1])
            proof = InclusionProof(
                int(self.proof_indexes[i]),
                int(self.tree_sizes[i]),
                self.root_hashes[i].tobytes(),
                tuple(h.tobytes() for h in self.proof_hashes[a:b]),
                self.checkpoints[i],
            )
        return LogEntry(
            entry_id=self.entry_ids[i],
            body=self.bodies[i],
            integrated_time=int(self.integrated_times[i]),
            log_id=self.log_ids[i].tobytes(),
            log_index=int(self.log_indexes[i]),
            inclusion_proof=proof,
            signed_entry_timestamp=self.sets[i],
        )

    def take(self, rows: Sequence[int] | npt.NDArray[np.intp]) -> LogEntryColumns:
        """The given rows, in that order (repeats allowed)."""
        order = np.asarray(rows, dtype=np.intp)
        lengths = np.diff(self.proof_offsets).astype(np.intp)[order]
        offsets = np.zeros(len(order) + 1, np.uint64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.proof_offsets[:-1].astype(np.intp)[order]
        gather = np.repeat(starts - offsets[:-1].astype(np.intp), lengths) + np.arange(
            int(offsets[-1]), dtype=np.intp
        )
        pick = order.tolist()
        return LogEntryColumns(
            entry_ids=[self.entry_ids[i] for i in pick],
            bodies=[self.bodies[i] for i in pick],
            integrated_times=self.integrated_times[order],
            log_ids=self.log_ids[order],
            log_indexes=self.log_indexes[order],
            has_proof=self.has_proof[order],
            proof_indexes=self.proof_indexes[order],
            tree_sizes=self.tree_sizes[order],
            root_hashes=self.root_hashes[order],
            proof_hashes=self.proof_hashes[gather],
            proof_offsets=offsets,
            checkpoints=[self.checkpoints[i] for i in pick],
            sets=[self.sets[i] for i in pick],
        )

    @classmethod
    def concat(cls, parts: Sequence[LogEntryColumns]) -> LogEntryColumns:
        """The rows of ``parts``, one after another."""
        if len(parts) == 1:
            return parts[0]
        counts = [np.diff(p.proof_offsets) for p in parts]
        offsets = np.zeros(sum(len(p) for p in parts) + 1, np.uint64)
        if len(offsets) > 1:
            np.cumsum(np.concatenate(counts), out=offsets[1:])
        return cls(
            entry_ids=[x for p in parts for x in p.entry_ids],
            bodies=[x for p in parts for x in p.bodies],
            integrated_times=_cat([p.integrated_times for p in parts], np.int64),
            log_ids=_cat([p.log_ids for p in parts], np.uint8, 32),
            log_indexes=_cat([p.log_indexes for p in parts], np.int64),
            has_proof=_cat([p.has_proof for p in parts], np.bool_),
            proof_indexes=_cat([p.proof_indexes for p in parts], np.uint64),
            tree_sizes=_cat([p.tree_sizes for p in parts], np.uint64),
            root_hashes=_cat([p.root_hashes for p in parts], np.uint8, 32),
            proof_hashes=_cat([p.proof_hashes for p in parts], np.uint8, 32),
            proof_offsets=offsets,
            checkpoints=[x for p in parts for x in p.checkpoints],
            sets=[x for p in parts for x in p.sets],
        )


def _rows32(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, np.uint8).reshape(-1, 32)


def _cat(arrays: list[Any], dtype: Any, width: int = 0) -> Any:
    if not arrays:
        return np.zeros((0, width) if width else 0, dtype)
    return np.concatenate(arrays)
