"""The proxy's background sync job: follow the upstream checkpoint, prefetch tiles.

Modes:

* ``edge``: after each verified checkpoint, the right edge (per level the
  last full tile and the partial one, and their bundles) is verified and
  cached; everything else is fetched when asked for.
* ``mirror``: the whole log, in batches of level-0 tiles with their bundles,
  each batch verified up to the checkpoint before it is cached. The position
  (the first level-0 tile not yet mirrored) is saved in the cache's index in
  the same way as the tiles, only after the batch is durable, so a killed
  mirror resumes where it stopped and never skips a tile.

A stop request lets the batch in hand finish (SIGTERM through uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from rekorkit.errors import MalformedError, RekorAPIError, VerificationError
from rekorkit.proxy.service import ProxyService
from rekorkit.tiles import TILE_WIDTH, level0_tiles

__all__ = ["SyncJob", "SyncMode", "SyncStatus"]

log = logging.getLogger(__name__)

SyncMode = Literal["edge", "mirror"]
_MIRROR_STATE = "proxy.mirror_next_tile"


@dataclass(slots=True)
class SyncStatus:
    """What ``/_admin/status`` shows of the job."""

    mode: str
    interval: float
    running: bool = False
    passes: int = 0
    last_pass: float | None = None
    last_success: float | None = None
    last_error: dict[str, Any] | None = None
    mirrored_entries: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "mode": self.mode,
            "interval": self.interval,
            "running": self.running,
            "passes": self.passes,
            "last_pass": self.last_pass,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "mirrored_entries": self.mirrored_entries,
        }


class SyncJob:
    """Follows the upstream for a :class:`ProxyService` (see the module docs).

    Args:
        service: the proxy.
        mode: ``edge`` or ``mirror``.
        interval: seconds between passes.
        batch_tiles: level-0 tiles per mirror batch.
    """

    def __init__(
        self,
        service: ProxyService,
        *,
        mode: SyncMode = "edge",
        interval: float = 10.0,
        batch_tiles: int = 64,
    ) -> None:
        if mode not in ("edge", "mirror"):
            raise ValueError(f"sync mode must be 'edge' or 'mirror', not {mode!r}")
        if batch_tiles < 1:
            raise ValueError("batch_tiles must be >= 1")
        self.service = service
        self.mode = mode
        self.batch_tiles = batch_tiles
        self.status = SyncStatus(mode=mode, interval=interval)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the job to stop after the batch in hand."""
        self._stop.set()

    async def run(self) -> None:
        """Passes every ``interval`` seconds until :meth:`stop`."""
        self.status.running = True
        try:
            while not self._stop.is_set():
                await self.run_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.status.interval)
        finally:
            self.status.running = False

    async def run_once(self) -> bool:
        """One pass: refresh the checkpoint, then prefetch. Returns whether it succeeded.

        Failures are recorded (status, metrics, log), never raised.
        """
        svc = self.service
        self.status.passes += 1
        self.status.last_pass = time.time()
        try:
            cp = await svc.refresh()
            if self.mode == "edge":
                await svc.prefetch_edge()
            else:
                await self._mirror(cp.size)
        except (VerificationError, MalformedError, RekorAPIError) as exc:
            self.status.last_error = {
                "time": time.time(),
                "type": type(exc).__name__,
                "message": str(exc),
                "evidence": getattr(exc, "evidence", {}),
            }
            svc.metrics.sync_runs.labels("error").inc()
            log.warning("sync pass failed: %s", exc)
            return False
        finally:
            if svc.upstream_size is not None and svc.checkpoint is not None:
                svc.metrics.lag.set(max(0, svc.upstream_size - svc.checkpoint.size))
        self.status.last_success = time.time()
        svc.metrics.sync_runs.labels("ok").inc()
        return True

    async def _mirror(self, size: int) -> None:
        svc = self.service
        raw = await asyncio.to_thread(svc.cache.get_state, _MIRROR_STATE)
        first = int(raw or b"0")
        ids = level0_tiles(min(first * TILE_WIDTH, size), size, size)
        batches = [ids[k : k + self.batch_tiles] for k in range(0, len(ids), self.batch_tiles)]
        # The next batch is read while this one is verified and written.
        ahead: asyncio.Future[list[bytes]] | None = None
        try:
            for k, batch in enumerate(batches):
                fetched = await (ahead or svc.fetch_mirrored(batch))
                ahead = None
                if k + 1 < len(batches) and not self._stop.is_set():
                    ahead = asyncio.ensure_future(svc.fetch_mirrored(batches[k + 1]))
                # A partial last tile is mirrored again once it has grown.
                done = batch[-1].index + (0 if batch[-1].is_partial else 1)
                await svc.store_mirrored(batch, fetched, state={_MIRROR_STATE: b"%d" % done})
                self.status.mirrored_entries = min(done * TILE_WIDTH, size)
                svc.metrics.sync_position.set(self.status.mirrored_entries)
                if self._stop.is_set():
                    return
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
        self.status.mirrored_entries = size
        svc.metrics.sync_position.set(size)
