"""The append-only log: tiles, bundles, index and signed checkpoints together.

:class:`TransparencyLog` is single-writer: one thread (the integrator) calls
:meth:`TransparencyLog.integrate`; any thread may read. A batch is made durable
in this order, so a crash at any point loses nothing that was acknowledged and
never publishes a checkpoint ahead of its tiles:

1. hash tiles and entry bundles written atomically and fsynced;
2. index rows committed in DuckDB;
3. the checkpoint signed and atomically replaced (the publish point);
4. only then are the submitters answered.

On open, anything past the published checkpoint (tiles, bundles, index rows
of a batch cut short by a crash) is removed and the Merkle state rebuilt from
the rightmost tiles.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rekorkit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from rekorkit.errors import StoreError
from rekorkit.merkle import EMPTY_ROOT, hash_leaves
from rekorkit.note import ECDSASigner, Ed25519Signer
from rekorkit.server.index import EntryIndex
from rekorkit.server.keys import LogIdentity, load_or_create_identity
from rekorkit.server.storage import TileStore
from rekorkit.tiles import (
    ProofBuilder,
    TileAppender,
    TileID,
    encode_entry_bundle,
    entries_path,
    parse_entry_bundle,
)

__all__ = ["Integrated", "LogState", "TransparencyLog"]

log = logging.getLogger(__name__)

# c2sp.org/tlog-tiles/§6.4: tiles are 256 wide; bundle entries carry a uint16 length.
WIDTH = 256
MAX_ENTRY_SIZE = 65535
# Index rows a bulk load gathers before one insert: one DuckDB commit per 2^18 rows
# costs about a quarter of one per chunk, and holds 8 MiB of leaf hashes at most.
_BULK_INDEX_ROWS = 1 << 18


@dataclass(frozen=True, slots=True)
class LogState:
    """A published tree head.

    Attributes:
        size: the tree size.
        root: the root hash.
        checkpoint: the C2SP checkpoint served at ``/checkpoint`` (Ed25519).
        v1_checkpoint: the same tree head as a Rekor v1 signed note (ECDSA).
    """

    size: int
    root: bytes
    checkpoint: bytes
    v1_checkpoint: bytes


@dataclass(frozen=True, slots=True)
class Integrated:
    """The outcome for one submitted leaf.

    Attributes:
        index: where the leaf is (new or existing).
        duplicate: the leaf was already in the log (or earlier in the batch).
        integrated_time: Unix seconds at integration (the original one for a duplicate
            is looked up by the API layer when it needs it).
    """

    index: int
    duplicate: bool
    integrated_time: int


class TransparencyLog:
    """A tile-backed Merkle log in a data directory.

    Args:
        data_dir: where keys, tiles (``tiles/``) and the index live.
        host: the origin for a new log (see :func:`load_or_create_identity`).
        fsync: make every batch durable before publishing (turn off only for
            throwaway benchmark data).
    """

    def __init__(self, data_dir: Path | str, *, host: str | None = None, fsync: bool = True):
        self.data_dir = Path(data_dir)
        self.identity: LogIdentity = load_or_create_identity(self.data_dir, host=host)
        self.store = TileStore(self.data_dir / "tiles", fsync=fsync)
        self.index = EntryIndex(self.data_dir / "index.duckdb")
        self.signer = Ed25519Signer(self.identity.host, self.identity.ed25519)
        self.v1_signer = ECDSASigner(self.identity.host, self.identity.ecdsa)
        self._write_lock = threading.Lock()
        self._edge: dict[tuple[int, int], bytes] = {}
        self._edge_entries: list[bytes] = []
        self._edge_view: tuple[int, list[bytes]] = (0, [])
        self._unsynced: list[str] = []
        self._flushes: list[Future[None]] = []
        self._bulk_rows: list[tuple[int, np.ndarray, int]] = []
        self.state = self._recover()

    # -- recovery ----------------------------------------------------------
    def _recover(self) -> LogState:
        raw = self.store.read_checkpoint()
        if raw is None:
            self.store.remove_beyond(0)
            self.index.truncate(0)
            self._appender = TileAppender(0, {})
            state = self._sign(0, EMPTY_ROOT)
            self.store.publish_checkpoint(state.checkpoint)
            return state
        signed = open_checkpoint(raw, self.signer.verifier(), origin=self.identity.host)
        size, root = signed.checkpoint.size, signed.checkpoint.root
        removed = self.store.remove_beyond(size)
        dropped = self.index.truncate(size)
        if removed or dropped:
            log.warning(
                "recovered at size %d: removed %d unpublished files, %d index rows",
                size,
                len(removed),
                dropped,
            )
        edge: dict[int, bytes] = {}
        level = 0
        while size >> (8 * level):
            count = size >> (8 * level)
            if count % WIDTH:
                edge[level] = self.store.read_tile(level, count // WIDTH, count % WIDTH)
            level += 1
        self._appender = TileAppender(size, edge)
        if self._appender.root() != root:
            raise StoreError(
                f"tiles in {self.store.root} do not hash to the checkpoint root at size {size}"
            )
        self._edge = {(lvl, (size >> (8 * lvl)) // WIDTH): t for lvl, t in edge.items()}
        if size % WIDTH:
            bundle = self.store.read_bundle(size // WIDTH, size % WIDTH)
            self._edge_entries = list(parse_entry_bundle(bundle))
            self._edge_view = (size // WIDTH, self._edge_entries)
        have = self.index.count()
        if have < size:
            self._reindex(have, size)
        return self._sign(size, root)

    def _reindex(self, start: int, size: int) -> None:
        """Rebuild index rows ``[start, size)`` from the entry bundles (time unknown: 0)."""
        log.warning("rebuilding index rows %d..%d from entry bundles", start, size)
        first = start // WIDTH
        for b in range(first, (size + WIDTH - 1) // WIDTH):
            width = min(WIDTH, size - b * WIDTH)
            entries = parse_entry_bundle(self.store.read_bundle(b, width))
            lo = max(start, b * WIDTH)
            self.index.add(lo, hash_leaves(entries[lo - b * WIDTH :]), 0)

    def _sign(self, size: int, root: bytes) -> LogState:
        cp = sign_checkpoint(Checkpoint(self.identity.host, size, root), [self.signer])
        v1 = sign_checkpoint(Checkpoint(self.identity.v1_origin, size, root), [self.v1_signer])
        return LogState(size, root, cp, v1)

    def sign_v1_checkpoint(self) -> bytes:
        """A freshly signed v1 checkpoint for the current tree head."""
        st = self.state
        return sign_checkpoint(
            Checkpoint(self.identity.v1_origin, st.size, st.root), [self.v1_signer]
        )

    # -- reading -----------------------------------------------------------
    def read_tile(self, level: int, index: int, width: int = WIDTH) -> bytes:
        """The first ``width`` hashes of tile ``(level, index)`` (memory, then disk)."""
        hit = self._edge.get((level, index))
        if hit is not None and len(hit) >= 32 * width:
            return hit[: 32 * width]
        return self.store.read_tile(level, index, width)

    def leaf_hash(self, index: int, size: int | None = None) -> bytes:
        """The leaf hash at ``index`` from its level-0 tile."""
        size = self.state.size if size is None else size
        if not 0 <= index < size:
            raise IndexError(index)
        tile = index // WIDTH
        width = min(WIDTH, size - tile * WIDTH)
        data = self.read_tile(0, tile, width)
        off = (index % WIDTH) * 32
        return data[off : off + 32]

    def leaf(self, index: int) -> bytes:
        """The leaf (entry) bytes at ``index`` from its entry bundle."""
        return self.leaves([index])[0]

    def leaves(self, indices: Sequence[int]) -> list[bytes]:
        """The leaves at ``indices`` (all published), each entry bundle read and parsed once."""
        size = self.state.size
        # The writer swaps in a new (bundle index, entries) pair as one object, so a
        # reader never pairs one bundle's entries with another bundle's index.
        edge_bundle, edge_entries = self._edge_view
        parsed: dict[int, list[bytes]] = {}
        out = []
        for index in indices:
            if not 0 <= index < size:
                raise IndexError(index)
            b, k = divmod(index, WIDTH)
            if b == edge_bundle and k < len(edge_entries):
                out.append(edge_entries[k])
                continue
            entries = parsed.get(b)
            if entries is None:
                width = min(WIDTH, size - b * WIDTH)
                entries = parsed[b] = parse_entry_bundle(self.store.read_bundle(b, width))
            out.append(entries[k])
        return out

    def find(self, leaf_hashes: np.ndarray, size: int | None = None) -> list[int | None]:
        """The index of each leaf hash in the tree of ``size`` (default: published), or None."""
        size = self.state.size if size is None else size
        hashes = np.ascontiguousarray(leaf_hashes, dtype=np.uint8).reshape(-1, 32)
        cands = self.index.candidates(hashes, size)
        out: list[int | None] = []
        prefixes = hashes[:, :8].copy().view(">i8").ravel().tolist()
        for i, p in enumerate(prefixes):
            found = None
            for idx in cands.get(int(p), ()):
                if self.leaf_hash(idx, size) == hashes[i].tobytes():
                    found = idx
                    break
            out.append(found)
        return out

    def proof_builder(self, size: int | None = None) -> ProofBuilder:
        """A proof builder over this log's tiles for a tree of ``size`` (default: published)."""
        return ProofBuilder(self.state.size if size is None else size, self.read_tile)

    # -- writing -----------------------------------------------------------
    def integrate(
        self, leaves: Sequence[bytes], *, now: int | None = None
    ) -> tuple[list[Integrated], LogState]:
        """Append the leaves not already present; publish one checkpoint for the batch.

        Returns one :class:`Integrated` per input leaf and the new state.
        Raises ValueError if a leaf is empty or over 65,535 bytes (nothing written).
        """
        for i, leaf in enumerate(leaves):
            if not 0 < len(leaf) <= MAX_ENTRY_SIZE:
                raise ValueError(f"leaf {i} has {len(leaf)} bytes; entries are 1..65535 bytes")
        now = int(time.time()) if now is None else now
        with self._write_lock:
            state = self.state
            if not leaves:
                return [], state
            hashes = hash_leaves(list(leaves))
            existing = self.find(hashes, state.size)
            results: list[Integrated] = []
            seen: dict[bytes, int] = {}
            new_rows: list[int] = []
            next_index = self._appender.size
            for i, found in enumerate(existing):
                if found is not None:
                    results.append(Integrated(found, True, now))
                    continue
                key = hashes[i].tobytes()
                if key in seen:
                    results.append(Integrated(seen[key], True, now))
                    continue
                seen[key] = next_index
                results.append(Integrated(next_index, False, now))
                new_rows.append(i)
                next_index += 1
            if not new_rows:
                return results, state
            new_hashes = hashes if len(new_rows) == len(leaves) else hashes[new_rows]
            new_leaves = [leaves[i] for i in new_rows]
            self.state = self._append(new_leaves, np.ascontiguousarray(new_hashes), now)
            return results, self.state

    def _append(self, leaves: Sequence[bytes], hashes: np.ndarray, now: int) -> LogState:
        start = self._appender.size
        touched = self._appender.append(hashes)
        files: list[tuple[str, bytes]] = [(tid.path, data) for tid, data in touched]
        files.extend(self._bundles(start, leaves))
        self.store.write_files(files)
        self.index.add(start, hashes, now)
        self._keep_edges(touched)
        state = self._sign(self._appender.size, self._appender.root())
        self.store.publish_checkpoint(state.checkpoint)
        return state

    def _keep_edges(self, touched: Sequence[tuple[object, bytes]]) -> None:
        """Remember the rightmost partial tile of each level for proofs."""
        size = self._appender.size
        # Levels this batch did not touch keep their previous edge tile.
        kept = {k: v for k, v in self._edge.items() if k[1] >= (size >> (8 * k[0])) // WIDTH}
        fresh = {
            (t.level, t.index): d  # type: ignore[attr-defined]
            for t, d in touched
            if len(d) < 32 * WIDTH
        }
        self._edge = kept | fresh

    def bulk_append(
        self,
        hashes: np.ndarray,
        bundles: Sequence[bytes] | int,
        tail: Sequence[bytes],
        *,
        now: int = 0,
    ) -> None:
        """Append pre-hashed, pre-bundled entries without dedup and without publishing.

        For bulk loads only: the log must end on a bundle boundary. ``bundles``
        are the encoded full bundles, or how many full bundles the caller has
        already written under :attr:`store` together with their level-0 tiles
        (worker processes do; a full level-0 tile is just its bundle's leaf
        hashes); ``tail`` are the entries after them. Nothing is flushed until
        :meth:`publish`, which fsyncs every file of the load, then signs.
        """
        with self._write_lock:
            start = self._appender.size
            if start % WIDTH or self._edge_entries:
                raise ValueError("bulk_append needs a log that ends on a bundle boundary")
            written = isinstance(bundles, int)
            n_full = bundles if isinstance(bundles, int) else len(bundles)
            if len(hashes) != n_full * WIDTH + len(tail):
                raise ValueError("hash count does not match the bundles")
            touched = self._appender.append(hashes)
            files: list[tuple[str, bytes]] = [
                (tid.path, data)
                for tid, data in touched
                if not (written and tid.level == 0 and tid.width == WIDTH)
            ]
            b0 = start // WIDTH
            if not isinstance(bundles, int):
                files.extend((entries_path(b0 + i), data) for i, data in enumerate(bundles))
            if tail:
                b = b0 + n_full
                files.append((entries_path(b, len(tail)), encode_entry_bundle(list(tail))))
            self.store.write_files(files, durable=False)
            # Flush the previous chunk in the background while this one is built; a chunk's
            # edge tiles may be rewritten by the next one, so they wait for publish.
            done = [path for path, _ in files if ".p/" not in path]
            if written:
                done.extend(entries_path(b0 + i) for i in range(n_full))
                done.extend(TileID(0, b0 + i).path for i in range(n_full))
            self._flushes.append(self.store.sync_later(done))
            self._unsynced.extend(path for path, _ in files if ".p/" in path)
            # Rows past the published size are never looked up, so they wait for a batch.
            self._bulk_rows.append((start, hashes, now))
            if sum(len(h) for _, h, _ in self._bulk_rows) >= _BULK_INDEX_ROWS:
                self._add_bulk_rows()
            self._edge_entries = list(tail)
            self._edge_view = (start // WIDTH + n_full, self._edge_entries)
            self._keep_edges(touched)

    def publish(self) -> LogState:
        """Publish a checkpoint for everything bulk-appended (already durable)."""
        with self._write_lock:
            if self._appender.size == self.state.size:
                return self.state
            for flush in self._flushes:
                flush.result()
            self._flushes = []
            self.store.sync(dict.fromkeys(self._unsynced))
            self._unsynced = []
            self._add_bulk_rows()
            state = self._sign(self._appender.size, self._appender.root())
            self.store.publish_checkpoint(state.checkpoint)
            self.state = state
            return state

    def _add_bulk_rows(self) -> None:
        """Insert the index rows gathered by :meth:`bulk_append` (consecutive) at once."""
        rows, self._bulk_rows = self._bulk_rows, []
        if not rows:
            return
        hashes = np.concatenate([h for _, h, _ in rows])
        times = np.concatenate([np.full(len(h), t, np.int64) for _, h, t in rows])
        self.index.add(rows[0][0], hashes, times)

    def _bundles(self, start: int, leaves: Sequence[bytes]) -> list[tuple[str, bytes]]:
        """Encode every entry bundle the new leaves touch; keep the rightmost in memory."""
        files: list[tuple[str, bytes]] = []
        pending = self._edge_entries
        b = start // WIDTH
        pos = 0
        while pos < len(leaves):
            take = min(WIDTH - len(pending), len(leaves) - pos)
            pending = pending + list(leaves[pos : pos + take])
            pos += take
            if len(pending) == WIDTH:
                files.append((entries_path(b), encode_entry_bundle(pending)))
                pending = []
                b += 1
        if pending:
            files.append((entries_path(b, len(pending)), encode_entry_bundle(pending)))
        self._edge_entries = pending
        self._edge_view = (b, pending)
        return files

    def close(self) -> None:
        """Release the index."""
        self.index.close()
