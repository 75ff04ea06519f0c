"""Batched reads for the v1 entry routes: leaves, integration times and SETs.

A v1 LogEntry carries two things the tiles do not: its integration time (a
row in the DuckDB index) and a signed entry timestamp over it (SET,
REKOR_API.md §2.5). Fetched per entry, they cost a DuckDB query and an ECDSA
signature for every entry of every response, most of the time a range read
spent in the server. Here the entries of one request are read together: each
entry bundle parsed once, a bundle's integration times fetched with one range
query, and both the times and the SETs kept per bundle (least recently used
bundle dropped first), since neither changes once the entry is published.

SETs are signed with deterministic ECDSA (RFC 6979), so a kept SET is
byte-for-byte the one the log would sign again: keeping them changes nothing
a client can observe.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rekorkit.entries import set_payload, sign_set
from rekorkit.server.log import WIDTH

if TYPE_CHECKING:
    from rekorkit.server.log import TransparencyLog

__all__ = ["V1EntryReader", "V1Records"]


@dataclass(frozen=True, slots=True)
class V1Records:
    """What the v1 routes need for a list of published indices, in request order.

    Attributes:
        indices: the log indices.
        leaves: each leaf (the entry bytes).
        bodies: each leaf as base64 (the LogEntry ``body``).
        times: each integration time (Unix seconds).
        sets: each SET as base64 (the ``signedEntryTimestamp``).
    """

    indices: list[int]
    leaves: list[bytes]
    bodies: list[str]
    times: list[int]
    sets: list[str]


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
    """

    def __init__(self, log: TransparencyLog, *, max_bundles: int = 512) -> None:
        if max_bundles < 1:
            raise ValueError("max_bundles must be at least 1")
        self.log = log
        self.max_bundles = max_bundles
        self.signed = 0
        self._bundles: OrderedDict[int, _Bundle] = OrderedDict()
        self._lock = threading.Lock()
        self._log_id = log.identity.v1_log_id.hex()

    def _bundle(self, b: int) -> _Bundle:
        with self._lock:
            rec = self._bundles.get(b)
            if rec is None:
                rec = self._bundles[b] = _Bundle()
                while len(self._bundles) > self.max_bundles:
                    self._bundles.popitem(last=False)
            else:
                self._bundles.move_to_end(b)
            return rec

    def read(self, indices: Sequence[int], size: int) -> V1Records:
        """The records of ``indices``, each below the published ``size``.

        Raises:
            IndexError: an index is not in the published tree.
        """
        idx = list(indices)
        leaves = self.log.leaves(idx)
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
        return V1Records(idx, leaves, bodies, times, sets)

    def set_for(self, index: int, body_b64: str, integrated_time: int) -> str:
        """The SET of a just-integrated entry as base64 (signed once, then kept)."""
        b, k = divmod(index, WIDTH)
        rec = self._bundle(b)
        s = rec.sets[k]
        if s is None:
            s = rec.sets[k] = self._sign(index, body_b64, integrated_time)
        return s

    def _sign(self, index: int, body_b64: str, integrated_time: int) -> str:
        # REKOR_API.md §2.5: the SET signs JCS {body, integratedTime, logID, logIndex}.
        payload = set_payload(body_b64, integrated_time, self._log_id, index)
        self.signed += 1
        sig = sign_set(payload, self.log.identity.ecdsa, deterministic=True)
        return base64.b64encode(sig).decode()
