"""Batched integration: many concurrent submissions, one append and one checkpoint.

Request handlers hand their leaf to :meth:`Integrator.submit` and await the
receipt. A single worker thread takes the first waiting leaf, keeps collecting
for up to ``max_wait`` seconds or ``max_batch`` leaves, then integrates the
whole batch in one call (one Rust append, one round of tile writes and fsyncs,
one signed checkpoint) and answers every submitter. Answers go out only after
the checkpoint is published, so an acknowledged entry is always durable.

Inclusion proofs are built from the tiles (:class:`rekorkit.tiles.ProofBuilder`
over the log's tile reader) rather than from an in-memory list of leaf hashes:
a proof needs about ``log256(size)`` tiles, the rightmost of which the log
keeps in memory, so memory stays flat at millions of entries while a leaf-hash
list would grow by 32 bytes per entry and have to be rebuilt on every restart.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rekorkit.server.log import MAX_ENTRY_SIZE, LogState, TransparencyLog

__all__ = ["Integrator", "Receipt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a submitter gets back once its batch is published.

    Attributes:
        index: the entry's log index (the existing one for a duplicate).
        duplicate: the entry was already logged.
        integrated_time: Unix seconds of this batch's integration.
        state: the published tree head that includes the entry.
        proof: the inclusion proof (leaf to root) in ``state``; empty for duplicates.
    """

    index: int
    duplicate: bool
    integrated_time: int
    state: LogState
    proof: tuple[bytes, ...]


@dataclass(slots=True)
class _Pending:
    leaf: bytes
    future: asyncio.Future[Receipt]
    loop: asyncio.AbstractEventLoop


class Integrator:
    """The single writer thread in front of a :class:`TransparencyLog`.

    Args:
        log: the log to append to.
        max_batch: most leaves per batch.
        max_wait: seconds to keep collecting after the first leaf arrives.
        delay: extra seconds to sleep before each batch (tests client timeouts).
    """

    def __init__(
        self,
        log: TransparencyLog,
        *,
        max_batch: int = 1024,
        max_wait: float = 0.004,
        delay: float = 0.0,
    ):
        self.log = log
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.delay = delay
        self.batches = 0
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="rekorkit-integrator", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Finish the queued work and stop the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def submit(self, leaf: bytes) -> Receipt:
        """Queue ``leaf`` and wait until a published checkpoint includes it.

        Raises:
            ValueError: the leaf cannot be stored in an entry bundle.
        """
        if not 0 < len(leaf) <= MAX_ENTRY_SIZE:
            raise ValueError(f"entry has {len(leaf)} bytes; the log stores 1..{MAX_ENTRY_SIZE}")
        if self._thread is None:
            raise RuntimeError("integrator is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        self._queue.put(_Pending(leaf, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._process(batch)

    def _process(self, batch: Sequence[_Pending]) -> None:
        if self.delay:
            time.sleep(self.delay)
        try:
            results, state = self.log.integrate([p.leaf for p in batch])
            builder = self.log.proof_builder(state.size)
            receipts = [
                Receipt(
                    r.index,
                    r.duplicate,
                    r.integrated_time,
                    state,
                    () if r.duplicate else tuple(builder.inclusion_proof(r.index)),
                )
                for r in results
            ]
        except Exception as exc:  # every waiter must hear back, whatever went wrong
            log.exception("integrating a batch of %d failed", len(batch))
            for p in batch:
                p.loop.call_soon_threadsafe(_fail, p.future, exc)
            return
        self.batches += 1
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Receipt], Receipt]]] = {}
        for p, receipt in zip(batch, receipts, strict=True):
            by_loop.setdefault(p.loop, []).append((p.future, receipt))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[asyncio.Future[Receipt], Receipt]]) -> None:
    for future, receipt in items:
        if not future.done():
            future.set_result(receipt)


def _fail(future: asyncio.Future[Receipt], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
