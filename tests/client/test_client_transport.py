"""The lean async HTTP/1.1 transport, against a scripted server on loopback.

The server answers each request by its path with a canned response (chunked,
delimited by the connection's end, after a 100 Continue, cut short, garbage,
never), so every framing case the parser must get right is exercised on a
real socket.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from rekorkit.client._http import RequestSpec
from rekorkit.client._session import AsyncSession, SessionConfig
from rekorkit.client._transport import AsyncHTTP1Transport
from rekorkit.client.resilience import RetryPolicy, Timeouts
from rekorkit.errors import RequestTimeoutError, RetryExhaustedError, TransportError

GZ = gzip.compress(b"hello gzip")

CANNED: dict[str, bytes] = {
    "/plain": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    ),
    "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
    "/eof": b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    "/short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
    "/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "/gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(GZ), GZ),
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
}
CLOSE_AFTER = {"/close", "/eof", "/short", "/garbage"}


@dataclass
class Scripted:
    """A loopback server answering from CANNED; counts connections and keeps request bodies."""

    url: str = ""
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)


async def _handle(state: Scripted, reader: asyncio.StreamReader, writer: Any) -> None:
    state.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            line, *headers = head.decode().split("\r\n")
            path = line.split(" ")[1]
            length = next(
                (int(h.split(":")[1]) for h in headers if h.lower().startswith("content-length")),
                0,
            )
            state.bodies.append(await reader.readexactly(length) if length else b"")
            if path == "/never":
                await asyncio.sleep(5)
                return
            if path == "/slow":
                await asyncio.sleep(0.05)
                path = "/plain"
            writer.write(CANNED[path])
            await writer.drain()
            if path in CLOSE_AFTER:
                return
    finally:
        writer.close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    state = Scripted()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: list[asyncio.Server] = []

    async def serve() -> None:
        srv = await asyncio.start_server(lambda r, w: _handle(state, r, w), "127.0.0.1", 0)
        server.append(srv)
        state.url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    assert started.wait(5)
    yield state

    async def stop() -> None:
        server[0].close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def fetch(
    url: str,
    paths: list[str],
    *,
    transport: AsyncHTTP1Transport | None = None,
    uvloop: bool = False,
    **kw: Any,
) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        tr = transport or AsyncHTTP1Transport(verify=False)
        out = []
        for p in paths:
            r = await tr.handle_async_request(httpx.Request("GET", url + p, **kw))
            await r.aread()
            await r.aclose()
            out.append(r)
        if transport is None:
            await tr.aclose()
        return out

    return anyio.run(main, backend_options={"use_uvloop": uvloop})


def test_framings(scripted: Scripted) -> None:
    got = fetch(scripted.url, ["/plain", "/chunked", "/continue", "/eof", "/gzip", "/empty"])
    assert [r.status_code for r in got] == [200, 200, 200, 200, 200, 204]
    assert [r.content for r in got] == [
        b"hello",
        b"hello",
        b"ok",
        b"until the end",
        b"hello gzip",
        b"",
    ]


def test_under_uvloop(scripted: Scripted) -> None:
    # uvloop's transports are asyncio-alike, not asyncio.Transport subclasses.
    pytest.importorskip("uvloop")
    before = scripted.connections
    got = fetch(scripted.url, ["/plain", "/eof", "/chunked"], uvloop=True)
    assert [r.content for r in got] == [b"hello", b"until the end", b"hello"]
    assert scripted.connections - before == 2  # /eof ends the first connection


def test_keep_alive_reuses_one_connection(scripted: Scripted) -> None:
    before = scripted.connections
    fetch(scripted.url, ["/plain"] * 5 + ["/chunked"] * 3)
    assert scripted.connections - before == 1


def test_connection_close_is_honoured(scripted: Scripted) -> None:
    before = scripted.connections
    got = fetch(scripted.url, ["/close", "/close", "/plain"])
    assert [r.content for r in got] == [b"bye", b"bye", b"hello"]
    assert scripted.connections - before == 3


def test_short_body_and_garbage_are_protocol_errors(scripted: Scripted) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="before the body was complete"):
        fetch(scripted.url, ["/short"])
    with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
        fetch(scripted.url, ["/garbage"])


def test_read_timeout(scripted: Scripted) -> None:
    with pytest.raises(httpx.ReadTimeout):
        fetch(scripted.url, ["/never"], extensions={"timeout": {"read": 0.1}})


def test_connect_refused() -> None:
    with pytest.raises(httpx.ConnectError):
        fetch("http://127.0.0.1:9", ["/plain"])


def test_post_body_is_sent(scripted: Scripted) -> None:
    async def main() -> int:
        async with AsyncHTTP1Transport(verify=False) as tr:
            req = httpx.Request("POST", scripted.url + "/plain", content=b'{"a":1}')
            r = await tr.handle_async_request(req)
            await r.aread()
            await r.aclose()
            return r.status_code

    assert anyio.run(main) == 200
    assert scripted.bodies[-1] == b'{"a":1}'


def test_header_injection_refused(scripted: Scripted) -> None:
    with pytest.raises(httpx.LocalProtocolError):
        fetch(scripted.url, ["/plain"], headers={"X-A": "1\r\nX-B: 2"})


def test_connections_bounded(scripted: Scripted) -> None:
    before = scripted.connections

    async def main() -> list[int]:
        tr = AsyncHTTP1Transport(max_connections=2, verify=False)
        statuses: list[int] = []

        async def one() -> None:
            r = await tr.handle_async_request(httpx.Request("GET", scripted.url + "/slow"))
            await r.aread()
            await r.aclose()
            statuses.append(r.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        await tr.aclose()
        return statuses

    assert anyio.run(main) == [200] * 8
    assert scripted.connections - before == 2  # both kept alive, none opened past the bound


def test_pool_timeout(scripted: Scripted) -> None:
    async def main() -> None:
        tr = AsyncHTTP1Transport(max_connections=1, verify=False)
        first = await tr.handle_async_request(httpx.Request("GET", scripted.url + "/plain"))
        try:
            req = httpx.Request(
                "GET", scripted.url + "/plain", extensions={"timeout": {"pool": 0.05}}
            )
            with pytest.raises(httpx.PoolTimeout):
                await tr.handle_async_request(req)
        finally:
            await first.aclose()  # unread: the connection is closed, not reused
        r = await tr.handle_async_request(httpx.Request("GET", scripted.url + "/plain"))
        assert await r.aread() == b"hello"
        await r.aclose()
        await tr.aclose()

    anyio.run(main)


def test_session_maps_errors_and_caps(scripted: Scripted) -> None:
    async def main() -> None:
        s = AsyncSession(
            scripted.url, SessionConfig(retry=RetryPolicy.none(), timeout=Timeouts(read=0.1))
        )
        assert isinstance(s.transport_for(scripted.url), AsyncHTTP1Transport)
        try:
            raw = await s.request(RequestSpec("GET", "gzip", content="bytes"))
            assert raw.body == b"hello gzip"
            with pytest.raises(RetryExhaustedError) as info:
                await s.request(RequestSpec("GET", "short", content="bytes"))
            assert isinstance(info.value.attempts[0], TransportError)
            with pytest.raises(RetryExhaustedError) as info:
                await s.request(RequestSpec("GET", "never", content="bytes"))
            assert isinstance(info.value.attempts[0], RequestTimeoutError)
        finally:
            await s.aclose()

    anyio.run(main)
