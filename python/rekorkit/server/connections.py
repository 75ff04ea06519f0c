"""HTTP/1.1 connections with deadlines and a bound: what uvicorn leaves to a proxy.

uvicorn times out idle keep-alive connections only after a response, so a
client that connects and sends nothing, drips a request line one byte at a
time, or stops halfway through a body keeps its connection (and a file
descriptor) forever; a few thousand such clients exhaust the server
("slowloris"). Rekor runs behind a load balancer that enforces these limits;
``rekorkit serve`` runs alone, so its connections enforce them:

* a request (request line, headers and body) must arrive whole within
  ``request_timeout`` seconds of its first byte (or of the connection); the
  client gets a JSON 408 and the connection closes;
* the request line and headers together are capped at :data:`MAX_HEADER_BYTES`
  (a JSON 431 above it), so an endless header cannot grow memory;
* a response the client stops reading (the socket buffer full) is dropped
  after ``request_timeout`` seconds;
* at most ``max_connections`` connections are open at once; one more is
  answered a JSON 503 and closed at once.

Every error this layer sends is Rekor's ``{"code", "message"}`` (the Rekor
OpenAPI ``Error``), as are the parser's 400s for malformed requests.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rekorkit.server.responses import raw_error
from rekorkit.server.service import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    ServerOptions,
)

__all__ = ["MAX_HEADER_BYTES", "GuardedHttpProtocol", "server_config"]

# Go's net/http default (DefaultMaxHeaderBytes) is 1 MiB; Rekor's requests carry a
# few hundred bytes of headers, so 64 KiB is generous.
MAX_HEADER_BYTES = 64 * 1024


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request deadlines, a header cap and a
    connection bound (see the module docstring). Configure with :meth:`configured`."""

    request_timeout: ClassVar[float] = DEFAULT_REQUEST_TIMEOUT
    max_connections: ClassVar[int] = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def configured(cls, options: ServerOptions) -> type[GuardedHttpProtocol]:
        """A subclass with the limits of ``options``."""
        limits = {
            "request_timeout": options.request_timeout,
            "max_connections": options.max_connections,
        }
        return type(cls.__name__, (cls,), limits)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_message = False  # between the first byte and the end of a request
        self._in_headers = True  # the request line and headers are not complete yet
        self._header_bytes = 0
        self._unanswered = 0  # requests received whole and not yet answered

    # -- connection ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._refused = True
            self.transport = transport
            transport.write(raw_error(503, "too many open connections; retry later"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._header_bytes += len(data)
        if self._deadline is None and self._unanswered == 0:
            self._arm()  # bytes before a request starts (stray CRLFs) count against it too
        super().data_received(data)
        if self._in_headers and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"request line and headers exceed {MAX_HEADER_BYTES} bytes")

    # -- parser callbacks --------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_message = False
        self._in_headers = True
        self._unanswered += 1
        self._disarm()

    def on_response_complete(self) -> None:
        self._unanswered = max(0, self._unanswered - 1)
        super().on_response_complete()
        if self._unanswered == 0 and self._deadline is None:
            self._arm()

    def send_400_response(self, msg: str) -> None:
        """A malformed request: Rekor's JSON 400 instead of uvicorn's plain text."""
        self.transport.write(raw_error(400, f"malformed HTTP request: {msg}"))
        self.transport.close()

    # -- writing -----------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.request_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write()

    # -- deadlines ---------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._unanswered:
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm()  # the server stopped reading (back-pressure), not the client
            return
        if self._in_message or self._header_bytes:
            self._refuse(408, f"request not received within {self.request_timeout:g} seconds")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _stalled(self) -> None:
        self._write_deadline = None
        if not self.transport.is_closing():
            self.transport.abort()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (if nothing was answered yet) and close the connection."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True  # the application's reads end; its sends are dropped
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.write(raw_error(status, message))
            self.transport.close()


def server_config(
    app: ASGIApp, options: ServerOptions, *, log_level: str = "warning", loop: str = "auto"
) -> uvicorn.Config:
    """The uvicorn configuration ``rekorkit serve`` and :mod:`rekorkit.testing` run with."""
    return uvicorn.Config(
        app,
        http=GuardedHttpProtocol.configured(options),
        loop=loop,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=5,
    )
