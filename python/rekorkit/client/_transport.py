"""A lean HTTP/1.1 keep-alive transport for the async clients (an httpx transport).

httpx's default async transport (httpcore over anyio streams) spends most of
a small request's CPU time managing its pool: each time a request is queued
or a response closed it asks every pooled connection whether the server has
closed it, a ``poll()`` plus an anyio attribute lookup per connection, and on
installs without ``sniffio`` each lock setup re-runs a failing import. On the
local log that is 0.6-3 ms of client CPU per tile read against about 0.15 ms
of server time; the client, not the log, bounded reads and writes.

This transport speaks HTTP/1.1 on asyncio protocols with the ``httptools``
parser (already a dependency of the server). An idle connection is known to
be closed from the ``connection_lost`` callback, so choosing one costs
nothing. It is an ``httpx.AsyncBaseTransport``: sessions, retries, body caps
and content decoding stay in httpx and ``rekorkit.client._session``, and it
raises httpx's own exceptions, so ``translate_errors`` maps them as before.
Requests it cannot serve (HTTP/2, HEAD, another event loop such as trio) go
to a regular ``httpx.AsyncHTTPTransport``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httptools
import httpx

from rekorkit.client.adaptive import WindowGate, WindowPolicy

__all__ = ["AsyncHTTP1Transport"]

# A connection idle this long is closed rather than reused: under uvicorn's
# default keep-alive timeout (5 s), so a request never races the server's close.
KEEPALIVE_EXPIRY = 4.0
# Body bytes buffered per connection before reading from the socket pauses.
_READ_HIGH_WATER = 256 * 1024
# The most bytes a status line and headers may take (h11, httpx's HTTP/1.1
# parser, allows the same); a log that never ends its headers is cut off here.
MAX_HEADER_BYTES = 100 * 1024
# Connections being opened at once, at first and at most. A burst of connects
# overflows a small server's listen backlog (``python -m http.server`` listens
# with 5), and each dropped SYN costs a one-second retransmit (RFC 6298 §2);
# opened a few at a time and reused, connections never queue there. Over a
# real link each connect takes a round trip, so four at a time would need 64
# round trips (3 s at 50 ms) to open the 256 a long link needs: there the
# number grows like TCP's slow start (one more per connect that took at least
# GROW_CONNECTING seconds and was not slow, so it doubles per round trip) and
# halves on a slow one. A connect that takes less is on loopback or a LAN:
# four at a time open thousands a second there, and a burst would only
# overflow the small listen queue of a busy local server.
MAX_CONNECTING = 4
MOST_CONNECTING = 64
GROW_CONNECTING = 0.005
# Connections open at once to an origin that closes every connection after one
# response (HTTP/1.0, ``Connection: close``), or that has not yet answered with
# a kept-alive response. Each request there costs a new connect, and a busy
# single-threaded server accepts them slower than a client opens them: its
# listen queue overflows and SYNs are dropped. Two keep one request on the
# wire while the next connects.
ONE_SHOT_CONNECTIONS = 2
_Origin = tuple[str, str, int]
_SLOW = WindowPolicy()  # its connect_factor and connect_slack say what a slow connect is


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time, reused while the server keeps it."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._wake: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._error: httpx.TransportError | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._until_eof = False
        self._head_bytes = 0

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.close()
        if not self.headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._fail(
                    httpx.RemoteProtocolError(f"response headers exceed {MAX_HEADER_BYTES} bytes")
                )
                self.close()
        self._notify()

    def eof_received(self) -> bool:
        if self.headers_done and not self.complete and self._until_eof:
            self.complete = True  # a body delimited by the end of the connection
        self._notify()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            message = (
                "server disconnected without sending a response"
                if not self.headers_done
                else "server disconnected before the body was complete"
            )
            self._fail(httpx.RemoteProtocolError(message))
        self._notify()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- httptools callbacks ------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:
            return  # an informational response: the real one follows
        self.headers_done = True
        names = {n.lower() for n, _ in self.headers}
        self._until_eof = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and self.status not in (204, 304)
        )

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            self.headers = []  # drop the informational response's headers
            return
        # llhttp forgets the keep-alive decision once the message is over.
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True

    # -- used by the transport ----------------------------------------------
    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        self._wake = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._wake
        except TimeoutError as exc:
            self.close()
            raise httpx.ReadTimeout("timed out waiting for the response") from exc
        finally:
            self._wake = None

    def usable(self, now: float) -> bool:
        """Whether this idle connection may carry another request."""
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < KEEPALIVE_EXPIRY
        )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    async def send(self, head: bytes, body: bytes, timeouts: dict[str, Any]) -> None:
        """Write a request and wait for its response headers."""
        self._reset()
        self._error = None
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        if self._writable is not None and not self._writable.done():
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    await self._writable
            except TimeoutError as exc:
                self.close()
                raise httpx.WriteTimeout("timed out sending the request") from exc
        read = timeouts.get("read")
        while not self.headers_done:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise httpx.RemoteProtocolError("server disconnected without sending a response")
            await self._wait(read)

    async def body(self, timeouts: dict[str, Any]) -> AsyncIterator[bytes]:
        """The response body, chunk by chunk, as it arrives."""
        read = timeouts.get("read")
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                yield chunk
            if self._paused and self.transport is not None and not self.closed:
                self._paused = False
                self.transport.resume_reading()
            if self.complete:
                return
            if self._error is not None:
                raise self._error
            if self.closed:
                raise httpx.RemoteProtocolError("server disconnected before the body was complete")
            await self._wait(read)

    def reusable(self) -> bool:
        """Whether the finished exchange leaves the connection open for the next one."""
        return self.complete and self.keep_alive and not self.closed


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(
        self, pool: AsyncHTTP1Transport, conn: _Connection, timeouts: dict[str, Any]
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._timeouts = timeouts
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.body(self._timeouts):
                yield chunk
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._pool._release(self._conn)


class _ConnectPacer:
    """How many new connections may be opening at once: slow start, for connects.

    From ``MAX_CONNECTING``, one more per connect that took a network round
    trip (at least ``GROW_CONNECTING``) but no more than the window's threshold
    for a slow one (``WindowPolicy.connect_factor`` times the fastest seen,
    plus ``connect_slack``), up to ``MOST_CONNECTING``; half as many after a
    slow one (a dropped SYN waits out a retransmission timeout).
    """

    def __init__(self) -> None:
        self.gate = WindowGate(MAX_CONNECTING)
        self._fastest: float | None = None

    @property
    def limit(self) -> int:
        return self.gate.limit

    def record(self, seconds: float) -> None:
        """Count one finished connect; the gate wakes waiters when the call returns."""
        fastest = self._fastest
        if fastest is None or seconds < fastest:
            self._fastest = seconds
        slow = (
            fastest is not None and seconds > fastest * _SLOW.connect_factor + _SLOW.connect_slack
        )
        if slow:
            self.failed()
        elif seconds >= GROW_CONNECTING:
            self.gate.window = min(MOST_CONNECTING, self.limit + 1)

    def failed(self) -> None:
        """A slow or failed connect: half as many at once from now on."""
        self.gate.window = max(1, self.limit // 2)


class AsyncHTTP1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive on asyncio, at most ``max_connections`` open at once.

    Args:
        max_connections: connections open at once, over every origin.
        verify: check TLS certificates (True), not (False), or use this context.
            Plain-http origins never load a context.
        on_connect: called with the seconds each new connection took to open
            (after waiting for a connect slot), for congestion control.
    """

    def __init__(
        self,
        *,
        max_connections: int = 16,
        verify: bool | ssl.SSLContext = True,
        on_connect: Callable[[float], None] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.max_connections = max_connections
        self._verify = verify
        self._ssl: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open = 0
        self._open_to: collections.Counter[_Origin] = collections.Counter()
        self._keeps_alive: set[_Origin] = set()  # origins that answered and kept the connection
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # Not an asyncio.Semaphore: before Python 3.12 each acquire scans all
        # its waiters, quadratic when hundreds of requests wait to connect.
        self._connecting = _ConnectPacer()
        self._on_connect = on_connect
        self._fallback: httpx.AsyncHTTPTransport | None = None
        self._closed = False

    def _fallback_transport(self) -> httpx.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx.AsyncHTTPTransport(
                verify=self._verify,
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_connections,
                ),
            )
        return self._fallback

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): httpx's transport serves every loop
            return await self._fallback_transport().handle_async_request(request)
        if request.method == "HEAD" or request.url.scheme not in ("http", "https"):
            # A HEAD response declares a length it does not send; the parser cannot know.
            return await self._fallback_transport().handle_async_request(request)
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        head = _request_head(request)
        body = await request.aread()
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        conn = await self._acquire(origin, timeouts)
        try:
            await conn.send(head, body, timeouts)
        except BaseException:
            # No silent resend: a dropped request is the retry policy's to see.
            conn.close()
            self._release(conn)
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_ResponseStream(self, conn, timeouts),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(self, origin: _Origin, timeouts: dict[str, Any]) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = None
        pool_timeout = timeouts.get("pool")
        if pool_timeout is not None:
            deadline = loop.time() + pool_timeout
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if conn.usable(now):
                    return conn
                self._discard(conn)
            if self._open >= self.max_connections:
                self._close_one_idle()
            if self._open < self.max_connections and self._origin_has_room(origin):
                self._open += 1
                self._open_to[origin] += 1
                try:
                    return await self._connect(origin, timeouts)
                except BaseException:
                    self._open -= 1
                    self._open_to[origin] -= 1
                    self._wake_one()
                    raise
            waiter = loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving: pass the turn on
                else:
                    waiter.cancel()  # _wake_one skips it
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(
                        "no connection became free within the pool timeout"
                    ) from exc
                raise

    async def _connect(self, origin: _Origin, timeouts: dict[str, Any]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if scheme == "https" else None

        async def open_connection() -> _Connection:
            began = loop.time()  # after the wait for a connect slot
            async with asyncio.timeout(timeouts.get("connect")):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
            seconds = loop.time() - began
            self._connecting.record(seconds)
            if self._on_connect is not None:
                self._on_connect(seconds)
            return conn

        try:
            return await self._connecting.gate.run(open_connection)
        except TimeoutError as exc:
            self._connecting.failed()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._connecting.failed()
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc

    def _origin_has_room(self, origin: _Origin) -> bool:
        return origin in self._keeps_alive or self._open_to[origin] < ONE_SHOT_CONNECTIONS

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(verify=bool(self._verify))
        return self._ssl

    def _release(self, conn: _Connection) -> None:
        """Back to the idle list if the exchange finished cleanly; closed otherwise."""
        if conn.reusable() and conn.origin not in self._keeps_alive:
            # Connections are reused here: the requests waiting for room may open more.
            self._keeps_alive.add(conn.origin)
            for _ in range(len(self._waiters)):
                self._wake_one()
        if conn.reusable() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            self._discard(conn)
            return
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._open_to[conn.origin] -= 1
        self._wake_one()

    def _close_one_idle(self) -> None:
        for conns in self._idle.values():
            if conns:
                self._discard(conns.pop(0))
                return

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()


def _request_head(request: httpx.Request) -> bytes:
    """The request line and headers; refuses a header that would split the message."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpx.LocalProtocolError(f"illegal header {name!r}")
        lines.append(b"%s: %s" % (name, value))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
