"""Prometheus metrics and the ``/healthz`` + ``/metrics`` endpoint of the long-running services.

The monitor, the queue worker and the proxy each declare a :class:`MetricSet`
in a registry of their own. :class:`MetricsServer` is a small asyncio
HTTP/1.1 responder (GET only, bounded request head), so it runs on the
service's own loop and leaves signal handling to the service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["MetricSet", "MetricsServer", "Renders"]

_MAX_HEAD = 8192


class MetricSet:
    """A service's metrics in their own registry, so several services can share a process.

    Each service declares its metrics with one line each, under one name prefix
    (Prometheus naming, https://prometheus.io/docs/practices/naming/).

    Args:
        prefix: the start of every metric name, e.g. ``rekorkit_monitor``.
    """

    def __init__(self, prefix: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._prefix = prefix

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        """Declare counter ``<prefix>_<name>`` (exposed with ``_total``)."""
        return Counter(f"{self._prefix}_{name}", doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        """Declare gauge ``<prefix>_<name>``."""
        return Gauge(f"{self._prefix}_{name}", doc, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        *labels: str,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        """Declare histogram ``<prefix>_<name>``."""
        return Histogram(
            f"{self._prefix}_{name}", doc, labels, registry=self.registry, buckets=buckets
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
