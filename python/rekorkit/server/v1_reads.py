"""Batched reads for the v1 entry routes: leaves, integration times and SETs.

A v1 LogEntry carries two things the tiles do not: its integration time (a
row in the DuckDB index) and a signed entry timestamp over it (SET,
the Rekor OpenAPI, InclusionPromise). Fetched per entry, they cost a DuckDB query and an ECDSA
signature for every entry of every response, most of the time a range read
spent in the server. Here the entries of one request are read together: each
entry bundle parsed once, a bundle's integration times fetched with one range
query, and both the times and the SETs kept per bundle (least recently used
bundle dropped first), since neither changes once the entry is published.

Inclusion proofs are built per level-0 tile and tree size: a full tile is a
perfect subtree (c2sp.org/tlog-tiles), so a proof for any of its 256 leaves is the
leaf's 8-hash path inside the tile followed by the tile's path to the root,
the same for all of them. One native call gives every in-tile path, one
proof gives the shared part, and the next requests of a range read (about
25 per tile) only slice them. Leaves of the partial edge tile get their
proofs from the tiles directly.

SETs are signed with deterministic ECDSA (RFC 6979), so a kept SET is
byte-for-byte the one the log would sign again: keeping them changes nothing
a client can observe.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from cachetools import LRUCache

from rekorkit import merkle
from rekorkit.entries import set_payload, sign_set
from rekorkit.server.log import WIDTH
from rekorkit.tiles import parse_entry_bundle

if TYPE_CHECKING:
    from rekorkit.server.log import TransparencyLog

__all__ = ["V1EntryReader", "V1Records"]

_PARSED_BUNDLES = 4  # full bundles kept parsed (about 200 KiB each for Rekor-sized entries)


@dataclass(frozen=True, slots=True)
class V1Records:
    """What the v1 routes need for a list of published indices, in request order.

    Attributes:
        indices: the log indices.
        leaves: each leaf (the entry bytes).
        bodies: each leaf as base64 (the LogEntry ``body``).
        times: each integration time (Unix seconds).
        sets: each SET as base64 (the ``signedEntryTimestamp``).
        proofs: each inclusion proof in the tree of the size read, its hashes as
            one hex string (64 characters per hash, leaf to root).
    """

    indices: list[int]
    leaves: list[bytes]
    bodies: list[str]
    times: list[int]
    sets: list[str]
    proofs: list[str]


@dataclass(slots=True)
class _Bundle:
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sets: list[str | None] = field(default_factory=lambda: [None] * WIDTH)


class V1EntryReader:
    """Reads v1 entry records from a log, keeping times and SETs of recent bundles.

    Thread-safe: request handlers call it from a thread pool.

    Args:
        log: the log to read.
        max_bundles: bundles whose times and SETs are kept (about 40 KiB each).
        max_proof_tiles: tiles whose proofs are kept, per tree size (about 130 KiB each).
    """

    def __init__(
        self, log: TransparencyLog, *, max_bundles: int = 512, max_proof_tiles: int = 16
    ) -> None:
        if max_bundles < 1 or max_proof_tiles < 1:
            raise ValueError("max_bundles and max_proof_tiles must be at least 1")
        self.log = log
        self.max_bundles = max_bundles
        self.max_proof_tiles = max_proof_tiles
        self.signed = 0
        self._bundles: LRUCache[int, _Bundle] = LRUCache(max_bundles)
        self._proofs: LRUCache[tuple[int, int], tuple[str, str]] = LRUCache(max_proof_tiles)
        self._parsed: LRUCache[int, list[bytes]] = LRUCache(_PARSED_BUNDLES)
        self._lock = threading.Lock()
        self._log_id = log.identity.v1_log_id.hex()

    def _bundle(self, b: int) -> _Bundle:
        with self._lock:
            rec = self._bundles.get(b)
            if rec is None:
                rec = self._bundles[b] = _Bundle()
            return rec

    def kept(self, indices: Sequence[int], size: int) -> bool:
        """Whether the times and SETs of ``indices`` (published, below ``size``) are all kept.

        Then :meth:`read` does no blocking work (no DuckDB query, no signature),
        and a request handler may call it without a thread hop.
        """
        with self._lock:
            for i in indices:
                if not 0 <= i < size:
                    return False
                b, k = divmod(i, WIDTH)
                rec = self._bundles.get(b)
                if rec is None or k >= len(rec.times) or rec.sets[k] is None:
                    return False
        return True

    def read(self, indices: Sequence[int], size: int) -> V1Records:
        """The records of ``indices``, each below the published ``size``.

        Raises:
            IndexError: an index is not in the published tree.
        """
        idx = list(indices)
        leaves = self._leaves(idx, size)
        bodies = [base64.b64encode(leaf).decode() for leaf in leaves]
        times: list[int] = []
        sets: list[str] = []
        recs: dict[int, _Bundle] = {}
        for i, body in zip(idx, bodies, strict=True):
            b, k = divmod(i, WIDTH)
            rec = recs.get(b)
            if rec is None:
                rec = recs[b] = self._bundle(b)
            if k >= len(rec.times):
                # Rows only ever appear at the end, so the longer read replaces the kept one.
                rec.times = self.log.index.integrated_times_between(
                    b * WIDTH, min(size, (b + 1) * WIDTH)
                )
            t = int(rec.times[k])
            times.append(t)
            s = rec.sets[k]
            if s is None:
                s = rec.sets[k] = self._sign(i, body, t)
            sets.append(s)
        return V1Records(idx, leaves, bodies, times, sets, self.proofs(idx, size))

    def proofs(self, indices: Sequence[int], size: int) -> list[str]:
        """The inclusion proof of each index in the tree of ``size``, as one hex string each."""
        full = size // WIDTH  # tiles below this one are full: perfect subtrees
        out = [""] * len(indices)
        edge = []
        for k, i in enumerate(indices):
            b, j = divmod(i, WIDTH)
            if b < full:
                inner, upper = self._tile_proofs(b, size)
                out[k] = inner[512 * j : 512 * (j + 1)] + upper
            else:
                edge.append(k)
        if edge:
            builder = self.log.proof_builder(size)
            hashes, offsets = builder.inclusion_proofs([indices[k] for k in edge])
            hx = hashes.tobytes().hex()
            bounds = (offsets.astype(np.int64) * 64).tolist()
            for n, k in enumerate(edge):
                out[k] = hx[bounds[n] : bounds[n + 1]]
        return out

    def _tile_proofs(self, b: int, size: int) -> tuple[str, str]:
        """(every in-tile path of tile ``b`` as hex, 512 characters each; the shared rest)."""
        key = (b, size)
        with self._lock:
            hit = self._proofs.get(key)
        if hit is not None:
            return hit
        tile = np.frombuffer(self.log.read_tile(0, b), np.uint8).reshape(WIDTH, 32)
        inner, _ = merkle.inclusion_proofs(tile, np.arange(WIDTH, dtype=np.uint64), WIDTH)
        upper = self.log.proof_builder(size).inclusion_proof(b * WIDTH)[8:]
        parts = (inner.tobytes().hex(), b"".join(upper).hex())
        with self._lock:
            self._proofs[key] = parts
        return parts

    def _leaves(self, indices: list[int], size: int) -> list[bytes]:
        """The leaves; the last few full bundles are kept parsed (a range read asks
        for 10 entries at a time, about 25 requests per bundle)."""
        full = size // WIDTH
        out: list[bytes] = []
        for i in indices:
            b, j = divmod(i, WIDTH)
            if b >= full:
                out.append(self.log.leaves([i])[0])
                continue
            with self._lock:
                entries = self._parsed.get(b)
            if entries is None:
                entries = parse_entry_bundle(self.log.store.read_bundle(b))
                with self._lock:
                    self._parsed[b] = entries
            out.append(entries[j])
        return out

    def set_for(self, index: int, body_b64: str, integrated_time: int) -> str:
        """The SET of a just-integrated entry as base64 (signed once, then kept)."""
        b, k = divmod(index, WIDTH)
        rec = self._bundle(b)
        s = rec.sets[k]
        if s is None:
            s = rec.sets[k] = self._sign(index, body_b64, integrated_time)
        return s

    def _sign(self, index: int, body_b64: str, integrated_time: int) -> str:
        # the Rekor OpenAPI, InclusionPromise: the SET signs JCS {body, integratedTime, logID,
        # logIndex}.
        payload = set_payload(body_b64, integrated_time, self._log_id, index)
        self.signed += 1
        sig = sign_set(payload, self.log.identity.ecdsa, deterministic=True)
        return base64.b64encode(sig).decode()
