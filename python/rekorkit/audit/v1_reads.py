"""Reading a Rekor v1 log range window by window, in index order.

The I/O half of :mod:`rekorkit.audit.v1log`: :func:`read_windows` keeps the
log's search requests (the Rekor OpenAPI ``searchLogQuery``: at most 10
indexes each) flowing in index order while a window is checked;
:class:`rekorkit.audit.committer.OrderedCommitter` stores what verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from rekorkit.client.v1 import AsyncRekorV1Client
from rekorkit.entries.columns import LogEntryColumns

__all__ = ["AHEAD", "COMMIT", "SEARCH", "read_windows"]

COMMIT = 4096  # entries stored per transaction, at most (windows are gathered)
SEARCH = 10  # the Rekor OpenAPI, searchLogQuery: indexes per search request (maxSearchQueries)
AHEAD = 1  # windows read ahead of the one being checked (memory: about AHEAD + 1 windows)


async def read_windows(
    client: AsyncRekorV1Client, spans: list[tuple[int, int]], offset: int, concurrency: int
) -> AsyncGenerator[tuple[int, int, LogEntryColumns], None]:
    """Yield each span's entries in order, read ahead by ``concurrency`` search requests.

    The requests (the Rekor OpenAPI, searchLogQuery: at most 10 indexes each) are taken in
    index order by a fixed set of workers, so spans complete in order and the
    request slots stay busy across span boundaries; no request is made for a
    span more than ``AHEAD`` past the one being checked. A failed read is
    raised when its span's turn comes, after the spans before it.
    """
    chunks = (
        (w, k, lo, min(b, lo + SEARCH))
        for w, (a, b) in enumerate(spans)
        for k, lo in enumerate(range(a, b, SEARCH))
    )
    parts: dict[int, list[LogEntryColumns | None]] = {}
    left: dict[int, int] = {}
    done: dict[int, asyncio.Event] = {}
    failed: dict[int, Exception] = {}
    turn = 0  # the span being checked
    moved = asyncio.Condition()

    def span(w: int) -> None:
        if w not in parts:
            a, b = spans[w]
            n = -(-(b - a) // SEARCH)
            parts[w], left[w], done[w] = [None] * n, n, asyncio.Event()

    async def worker() -> None:
        for w, k, lo, hi in chunks:
            if w > turn + AHEAD:
                async with moved:
                    while w > turn + AHEAD:
                        await moved.wait()
            span(w)
            try:
                parts[w][k] = await client.get_entry_columns(range(lo + offset, hi + offset))
            except Exception as exc:
                failed.setdefault(w, exc)
                done[w].set()
                return
            left[w] -= 1
            if not left[w]:
                done[w].set()

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        for w, (a, b) in enumerate(spans):
            span(w)
            await done[w].wait()
            if w in failed:
                raise failed[w]
            got = [p for p in parts.pop(w) if p is not None]
            del left[w], done[w]
            yield a, b, LogEntryColumns.concat(got)
            turn = w + 1
            async with moved:
                moved.notify_all()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.wait(workers)  # their cancellation is not ours: wait, do not raise it
