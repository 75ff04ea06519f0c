"""Storage for what was verified: entries, checkpoints and verified ranges.

The embedded default is DuckDB (:class:`rekorkit.store.duckdb.DuckDBStore`);
PostgreSQL (:class:`rekorkit.store.postgres.PostgresStore`) is shared by many
processes; :func:`rekorkit.store.open.open_store` picks one from a location.
The value types, the :class:`CheckpointStore` and :class:`EntryStore`
protocols and the backend-independent logic live here, so engines and other
backends share them without importing either database.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rekorkit.errors import DivergenceError, MalformedError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

__all__ = [
    "CheckpointStore",
    "EntryStore",
    "OriginSummary",
    "StoredCheckpoint",
    "StoredEntry",
    "check_entry_rows",
    "entry_uuid_bytes",
    "missing_ranges",
    "normalize_digest",
    "same_size_fork",
    "stored_entry",
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
        """The Rekor entry UUID: the hex leaf hash (the Rekor OpenAPI, entry UUID)."""
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


@runtime_checkable
class EntryStore(CheckpointStore, Protocol):
    """Verified entries, their verified ranges and checkpoints: what the audit engines write.

    :class:`~rekorkit.store.duckdb.DuckDBStore` and
    :class:`~rekorkit.store.postgres.PostgresStore` both satisfy it. Entries
    and the range they fill are stored in one transaction, so a crash never
    leaves rows outside a recorded range and a run resumes from the ranges.
    """

    def commit_entries(
        self,
        origin: str,
        batches: Iterable[pa.RecordBatch | pa.Table],
        *,
        start: int,
        end: int,
        checkpoint: StoredCheckpoint | None = None,
    ) -> int:
        """Store verified entries ``[start, end)`` of ``origin`` (and ``checkpoint``) atomically."""
        ...

    def verified_ranges(self, origin: str) -> list[tuple[int, int]]:
        """The stored index ranges ``[start, end)`` of ``origin``, in order."""
        ...

    def missing_ranges(self, origin: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not yet stored for ``origin``."""
        ...

    def last_verified_size(self, origin: str) -> int:
        """The end of the highest stored range of ``origin`` (0 when none)."""
        ...

    def count(self, origin: str | None = None) -> int:
        """How many entries are stored (for ``origin``, or in total)."""
        ...

    def entry(self, origin: str, index: int) -> StoredEntry | None:
        """The stored entry at ``index`` in ``origin``'s tree, if any."""
        ...

    def entries(self, origin: str, start: int, end: int) -> list[StoredEntry]:
        """The stored entries of ``origin`` with ``start <= index < end``."""
        ...

    def entries_table(self, origin: str, start: int, end: int) -> pa.Table:
        """Like :meth:`entries`, as one Arrow table."""
        ...

    def entries_at(self, origin: str, indices: Sequence[int]) -> pa.Table:
        """The stored entries of ``origin`` at ``indices``, as one Arrow table in index order."""
        ...

    def find_by_uuid(self, uuid: str) -> list[StoredEntry]:
        """Entries with this Rekor UUID (or 80-hex entry ID)."""
        ...

    def find_by_digest(self, digest: str | bytes) -> list[StoredEntry]:
        """Entries whose artifact (or DSSE payload) digest is ``digest``."""
        ...

    def close(self) -> None:
        """Release the store's connection."""
        ...


def same_size_fork(cp: StoredCheckpoint, stored_root: bytes, stored_note: bytes) -> DivergenceError:
    """The error for ``cp`` when another root is stored for its origin and size (a fork),
    with both signed notes and roots as evidence."""
    return DivergenceError(
        f"{cp.origin}: two different roots for tree size {cp.size}",
        origin=cp.origin,
        size=cp.size,
        old=stored_note.decode("utf-8", "replace"),
        new=cp.note.decode("utf-8", "replace"),
        old_root=stored_root.hex(),
        new_root=cp.root_hash.hex(),
    )


def missing_ranges(
    stored: Iterable[tuple[int, int]], start: int, end: int
) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` outside the ``stored`` ranges (sorted by start)."""
    gaps: list[tuple[int, int]] = []
    pos = start
    for s, e in stored:
        if e <= pos or s >= end:
            continue
        if s > pos:
            gaps.append((pos, min(s, end)))
        pos = max(pos, e)
        if pos >= end:
            break
    if pos < end:
        gaps.append((pos, end))
    return gaps


def stored_entry(row: Sequence[Any]) -> StoredEntry:
    """A :class:`StoredEntry` from a database row in the entry columns' order."""
    return StoredEntry(
        origin=row[0],
        log_index=int(row[1]),
        leaf_hash=bytes(row[2]),
        kind=row[3],
        api_version=row[4],
        body=bytes(row[5]),
        integrated_time=row[6],
        checkpoint_size=int(row[7]),
        global_index=row[8],
    )


def check_entry_rows(origin: str, table: pa.Table, start: int, end: int) -> None:
    """Check that ``table`` holds exactly the entries ``start .. end-1`` of ``origin``, in order.

    Raises:
        StoreError: a bad range, a wrong row count, a gap or a foreign origin.
    """
    if not 0 <= start <= end:
        raise StoreError(f"bad range [{start}, {end})")
    if table.num_rows != end - start:
        raise StoreError(f"{table.num_rows} rows for the range [{start}, {end}) of {origin}")
    if table.num_rows:
        idx = table.column("log_index").to_numpy()
        if idx[0] != start or (idx[1:] - idx[:-1] != 1).any():
            raise StoreError(f"entries for [{start}, {end}) of {origin} are not consecutive")
        origins = table.column("origin").unique()
        if len(origins) != 1 or origins[0].as_py() != origin:
            raise StoreError(f"entries for {origin} carry another origin")


def normalize_digest(digest: str | bytes) -> str:
    """An artifact digest as lowercase hex, from hex, ``sha256:<hex>`` or raw bytes.

    Raises:
        MalformedError: the text is not hex.
    """
    if isinstance(digest, bytes):
        return digest.hex()
    text = digest.strip().lower()
    if ":" in text:
        text = text.split(":", 1)[1]
    try:
        bytes.fromhex(text)
    except ValueError as exc:
        raise MalformedError(f"artifact digest {digest!r} is not hex", what="digest") from exc
    return text


def entry_uuid_bytes(uuid: str) -> bytes:
    """The 32-byte leaf hash of a Rekor UUID (64 hex) or entry ID (80 hex: tree ID + UUID).

    Raises:
        MalformedError: the wrong length, or not hex.
    """
    text = uuid.strip().lower()
    if len(text) not in (64, 80):
        raise MalformedError(
            f"entry UUID must be 64 or 80 hex characters, got {len(text)}", what="uuid"
        )
    try:
        return bytes.fromhex(text[-64:])
    except ValueError as exc:
        raise MalformedError(f"entry UUID {uuid!r} is not hex", what="uuid") from exc
