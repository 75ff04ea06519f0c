"""Fork mode: the log lies, so that divergence detection can be tested.

:func:`build_fork` makes a second tree that shares the real log's first ``at``
leaves and then continues with ``extra`` different (synthetic) leaves. Its
tiles, bundles and checkpoints are signed with the log's real keys, so a client
sees two validly signed checkpoints that no consistency proof can join: a
split view (some readers get the fork) or a rewritten history (everyone does).

A :class:`ForkView` has what the read paths need (``state``, ``store``,
``read_tile``) so the static tile routes and the v1 log-info and
consistency-proof routes can serve it in place of the real log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np

from rekorkit.checkpoint import Checkpoint, sign_checkpoint
from rekorkit.merkle import hash_leaves
from rekorkit.server.log import WIDTH, LogState, TransparencyLog
from rekorkit.server.storage import TileStore
from rekorkit.tiles import (
    ProofBuilder,
    TileAppender,
    encode_entry_bundle,
    entries_path,
    parse_entry_bundle,
)

__all__ = ["READERS", "ForkView", "build_fork"]

READERS = ("all", "header")
FORK_HEADER = "x-rekorkit-view"


@dataclass(frozen=True, slots=True)
class ForkView:
    """A forked tree served instead of the real one.

    Attributes:
        at: how many leading leaves it shares with the real log.
        readers: ``"all"`` (rewritten history for everyone) or ``"header"``
            (only requests with ``x-rekorkit-view: fork``: a split view).
        state: its signed tree head (both C2SP and v1 checkpoints).
        store: its tiles and checkpoint.
    """

    at: int
    readers: str
    state: LogState
    store: TileStore

    def read_tile(self, level: int, index: int, width: int = WIDTH) -> bytes:
        """A tile of the forked tree."""
        return self.store.read_tile(level, index, width)

    def proof_builder(self, size: int | None = None) -> ProofBuilder:
        """Proofs over the forked tree."""
        return ProofBuilder(self.state.size if size is None else size, self.read_tile)

    def applies_to(self, headers: dict[str, str]) -> bool:
        """Whether a request with these (lower-case) headers sees the fork."""
        return self.readers == "all" or headers.get(FORK_HEADER) == "fork"


def _fork_leaf(i: int) -> bytes:
    # Synthetic entries that announce what they are; they only need to differ.
    return b'{"apiVersion":"0.0.1","kind":"fork","spec":{"forged":%d}}' % i


def build_fork(log: TransparencyLog, *, at: int, extra: int, readers: str = "all") -> ForkView:
    """Build a fork sharing ``log``'s first ``at`` leaves, then ``extra`` forged ones.

    Raises:
        ValueError: ``at`` is past the published size, ``extra`` < 1, or unknown ``readers``.
    """
    size = log.state.size
    if not 0 <= at <= size:
        raise ValueError(f"fork point {at} is outside the published tree (size {size})")
    if extra < 1 or extra > 1_000_000:
        raise ValueError("extra must be 1..1000000 forged entries")
    if readers not in READERS:
        raise ValueError(f"readers must be one of {READERS}")
    root_dir = log.data_dir / "fork"
    shutil.rmtree(root_dir, ignore_errors=True)
    store = TileStore(root_dir, fsync=False)

    appender = TileAppender(0, {})
    files: list[tuple[str, bytes]] = []
    # The shared prefix: real leaf hashes straight from the real level-0 tiles.
    for t in range(0, (at + WIDTH - 1) // WIDTH):
        width = min(WIDTH, at - t * WIDTH)
        tile = log.read_tile(0, t, min(WIDTH, size - t * WIDTH))[: 32 * width]
        files.extend(
            (tid.path, d)
            for tid, d in appender.append(np.frombuffer(tile, np.uint8).reshape(-1, 32))
        )
    forged = [_fork_leaf(i) for i in range(at, at + extra)]
    files.extend((tid.path, d) for tid, d in appender.append(hash_leaves(forged)))

    # Bundles: the real entries up to the fork point, then the forged ones.
    entries: list[bytes] = []
    b0 = at // WIDTH
    if at % WIDTH:
        width = min(WIDTH, size - b0 * WIDTH)
        entries = list(parse_entry_bundle(log.store.read_bundle(b0, width)))[: at % WIDTH]
    for b in range(b0):
        files.append((entries_path(b), log.store.read_bundle(b)))
    entries.extend(forged)
    b = b0
    for start in range(0, len(entries), WIDTH):
        chunk = entries[start : start + WIDTH]
        files.append((entries_path(b, len(chunk)), encode_entry_bundle(chunk)))
        b += 1
    store.write_files(_latest_only(files))

    fsize, root = appender.size, appender.root()
    ident = log.identity
    cp = sign_checkpoint(Checkpoint(ident.host, fsize, root), [log.signer])
    v1 = sign_checkpoint(Checkpoint(ident.v1_origin, fsize, root), [log.v1_signer])
    store.publish_checkpoint(cp)
    return ForkView(at, readers, LogState(fsize, root, cp, v1), store)


def _latest_only(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Keep the last content written per path (appends rewrite edge tiles)."""
    latest: dict[str, bytes] = {}
    for path, data in files:
        latest[path] = data
    return list(latest.items())
