"""Storage for what was verified: entries, checkpoints and verified ranges.

The embedded default is DuckDB (:class:`rekorkit.store.duckdb.DuckDBStore`).
The value types and the :class:`CheckpointStore` protocol live here so that
other backends and the sync/divergence code can share them without importing
DuckDB.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "CheckpointStore",
    "OriginSummary",
    "StoredCheckpoint",
    "StoredEntry",
]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A verified checkpoint as kept by a store.

    Attributes:
        origin: the checkpoint origin line (the log's identity).
        size: the tree size it commits to.
        root_hash: the 32-byte RFC 6962 root.
        note: the full signed note, byte for byte as the log served it.
        first_seen: when this checkpoint was first stored (UTC).
        last_seen: when it was last seen again (UTC).
    """

    origin: str
    size: int
    root_hash: bytes
    note: bytes
    first_seen: _dt.datetime | None = None
    last_seen: _dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One verified log entry as kept by a store.

    Attributes:
        origin: the origin of the tree the entry is in.
        log_index: its index in that tree (shard-local for Rekor v1).
        leaf_hash: the RFC 6962 leaf hash (the Rekor UUID, as bytes).
        kind: the Rekor entry kind (``hashedrekord``, ``dsse``...) or ``None``.
        api_version: the entry's ``apiVersion`` or ``None``.
        body: the leaf bytes (the canonicalized body).
        integrated_time: Unix seconds, for logs that record it (Rekor v1).
        checkpoint_size: size of the checkpoint the entry was verified against.
        global_index: Rekor v1's virtual index across shards, else ``None``.
    """

    origin: str
    log_index: int
    leaf_hash: bytes
    kind: str | None
    api_version: str | None
    body: bytes
    integrated_time: int | None
    checkpoint_size: int
    global_index: int | None = None

    @property
    def uuid(self) -> str:
        """The Rekor entry UUID: the hex leaf hash (REKOR_API.md §2.2)."""
        return self.leaf_hash.hex()


@dataclass(frozen=True, slots=True)
class OriginSummary:
    """What a store holds for one origin.

    Attributes:
        origin: the log origin.
        entries: how many verified entries are stored.
        verified_size: the end of the highest verified range (0 if none).
        checkpoint_size: the size of the latest stored checkpoint (0 if none).
    """

    origin: str
    entries: int
    verified_size: int
    checkpoint_size: int


@runtime_checkable
class CheckpointStore(Protocol):
    """Where verified checkpoints are kept, per origin.

    Sync and divergence detection use this to compare what a log says now
    with what it said before. Implementations refuse to store two different
    roots for the same origin and size (that is a fork: ``DivergenceError``).
    """

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> bool:
        """Store a verified checkpoint; return True if it was new."""
        ...

    def latest_checkpoint(self, origin: str) -> StoredCheckpoint | None:
        """The largest stored checkpoint for ``origin``, if any."""
        ...

    def checkpoint(self, origin: str, size: int) -> StoredCheckpoint | None:
        """The stored checkpoint of ``origin`` at ``size``, if any."""
        ...

    def checkpoints(self, origin: str) -> list[StoredCheckpoint]:
        """Every stored checkpoint of ``origin``, smallest size first."""
        ...
