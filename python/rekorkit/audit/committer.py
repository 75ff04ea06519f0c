"""Verified entries stored in index order, one transaction in flight, off the event loop.

Both bulk engines verify entries out of their store's sight and hand them
here in index order. A transaction costs about as much for one row as for
thousands, so batches are gathered until ``commit_rows`` rows wait; then
they are written in a worker thread while the next batches are verified.
Because batches arrive in order and a commit waits for the one before it,
the store never holds an entry past the last verified one, and a failure
leaves a verified prefix behind, never a hole.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from rekorkit.store import EntryStore, StoredCheckpoint

__all__ = ["OrderedCommitter"]


class OrderedCommitter:
    """Stores verified Arrow batches in order, one commit in flight.

    Args:
        store: the store, or ``None`` to count only.
        commit_rows: rows gathered before a commit starts.
        aligned: commit whole multiples of ``commit_rows`` and keep the rest
            for the next commit (DuckDB row groups), instead of all that waits.
        checkpoint: the checkpoint the entries were verified against, recorded
            with each commit.
    """

    def __init__(
        self,
        store: EntryStore | None,
        *,
        commit_rows: int,
        aligned: bool = False,
        checkpoint: StoredCheckpoint | None = None,
    ) -> None:
        self.store = store
        self.stored = 0
        self._commit_rows = max(1, commit_rows)
        self._aligned = aligned
        self._checkpoint = checkpoint
        self._origin = ""
        self._start = 0
        self._rows = 0
        self._batches: list[Any] = []
        self._running: asyncio.Future[None] | None = None

    async def add(self, origin: str, start: int, batch: Any) -> None:
        """Queue verified entries ``[start, start + batch.num_rows)`` of ``origin``.

        A batch that does not follow the queued ones (another origin, or a
        gap) first starts a commit of what is queued.
        """
        if self._batches and (origin != self._origin or start != self._start + self._rows):
            await self._commit(self._rows)
        if not self._batches:
            self._origin, self._start = origin, start
        self._batches.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self._commit_rows:
            rows = self._rows - self._rows % self._commit_rows if self._aligned else self._rows
            await self._commit(rows)

    async def close(self) -> None:
        """Store what is queued and wait until it is stored."""
        if self._rows:
            await self._commit(self._rows)
        await self._wait()

    async def _wait(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            await running

    async def _commit(self, rows: int) -> None:
        origin, start, batches = self._origin, self._start, self._batches
        if rows < self._rows:
            table = pa.Table.from_batches(batches)
            head, tail = table.slice(0, rows), table.slice(rows)
            batches, self._batches = [head], tail.to_batches()
        else:
            self._batches = []
        self._start, self._rows = start + rows, self._rows - rows
        await self._wait()  # one commit in flight, in order
        if self.store is None or rows == 0:
            return
        store, checkpoint = self.store, self._checkpoint

        def work() -> None:
            store.commit_entries(
                origin, batches, start=start, end=start + rows, checkpoint=checkpoint
            )

        self._running = asyncio.ensure_future(asyncio.to_thread(work))
        self.stored += rows
