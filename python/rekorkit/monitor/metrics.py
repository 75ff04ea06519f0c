"""Prometheus metrics and the ``/healthz`` + ``/metrics`` endpoint of the monitor.

The endpoint is a small asyncio HTTP/1.1 responder (GET only, bounded
request head), so it runs on the service's own loop and leaves signal
handling to the service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer", "MonitorMetrics"]

_MAX_HEAD = 8192


class MonitorMetrics:
    """The monitor's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.log_size = Gauge(
            "rekorkit_monitor_log_size", "Latest verified size", ["log"], registry=r
        )
        self.frontier = Gauge(
            "rekorkit_monitor_frontier", "Size up to which entries are stored", ["log"], registry=r
        )
        self.lag = Gauge(
            "rekorkit_monitor_lag_entries", "Entries not yet stored", ["log"], registry=r
        )
        self.entries = Counter(
            "rekorkit_monitor_entries", "Entries verified and stored", ["log"], registry=r
        )
        self.rate = Gauge(
            "rekorkit_monitor_entries_per_second", "Rate of the last sync step", ["log"], registry=r
        )
        self.alerts = Counter("rekorkit_monitor_alerts", "New alerts by kind", ["kind"], registry=r)
        self.errors = Counter(
            "rekorkit_monitor_errors", "Failed rounds by log", ["log"], registry=r
        )
        self.last_success = Gauge(
            "rekorkit_monitor_last_success_timestamp_seconds",
            "Unix time of the last successful round",
            ["log"],
            registry=r,
        )
        self.deliveries_failed = Counter(
            "rekorkit_monitor_delivery_failures", "Failed alert deliveries", registry=r
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))


class Renders(Protocol):
    """Anything whose Prometheus text exposition ``/metrics`` can serve."""

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        ...


class MetricsServer:
    """Serves ``GET /healthz`` (JSON from ``health()``) and ``GET /metrics``.

    Args:
        metrics: what ``/metrics`` renders.
        health: returns ``(ok, document)``; ``ok=False`` answers 503.
    """

    def __init__(self, metrics: Renders, health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.metrics = metrics
        self.health = health
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the port."""
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        try:
            status, ctype, body = self._answer(head[:_MAX_HEAD])
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", "text/plain", b"malformed request line\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if target == b"/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        if target == b"/healthz":
            ok, doc = self.health()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "application/json", json.dumps(doc).encode() + b"\n"
        return "404 Not Found", "text/plain", b"not found\n"
