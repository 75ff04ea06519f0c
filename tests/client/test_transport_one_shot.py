"""The lean transport's connection pacing: servers that close every connection, slow connects.

Such a server (HTTP/1.0, ``python -m http.server``) costs a connect per
request; once the transport has seen it close, it keeps at most
``ONE_SHOT_CONNECTIONS`` connections open to it, so a burst of requests never
overflows the server's listen queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from rekorkit.client._transport import (
    MAX_CONNECTING,
    MOST_CONNECTING,
    ONE_SHOT_CONNECTIONS,
    AsyncHTTP1Transport,
    _ConnectPacer,
)


class Http10Server:
    """Answers each request with HTTP/1.0 and closes; counts connections open at once."""

    def __init__(self, keep_alive: bool, delay: float = 0.005) -> None:
        self.keep_alive = keep_alive
        self.delay = delay
        self.open = 0
        self.most_open = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.connections += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                await asyncio.sleep(self.delay)
                if self.keep_alive:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open -= 1
            writer.close()


async def _burst(keep_alive: bool, requests: int = 60) -> Http10Server:
    server = Http10Server(keep_alive)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    transport = AsyncHTTP1Transport(max_connections=16)
    async with listener, httpx.AsyncClient(transport=transport) as client:
        first = await client.get(f"http://127.0.0.1:{port}/first")  # teaches the transport
        assert first.text == "ok"
        server.most_open = server.open
        replies = await asyncio.gather(
            *(client.get(f"http://127.0.0.1:{port}/{i}") for i in range(requests))
        )
        assert [r.text for r in replies] == ["ok"] * requests
    return server


def test_a_server_that_closes_gets_few_connections_at_once() -> None:
    server = asyncio.run(_burst(keep_alive=False))
    assert server.connections == 61  # one connect per request: nothing is reused
    assert server.most_open <= ONE_SHOT_CONNECTIONS


def test_a_keep_alive_server_still_gets_parallel_connections() -> None:
    server = asyncio.run(_burst(keep_alive=True))
    assert server.most_open > ONE_SHOT_CONNECTIONS  # the limit is for one-shot servers only
    assert server.connections <= 17


def _peak_connects(monkeypatch: pytest.MonkeyPatch, handshake: float, requests: int) -> int:
    """The most connects in progress at once while ``requests`` parallel GETs open their
    connections to a keep-alive server, each connect taking ``handshake`` seconds more."""
    opening = most_opening = 0
    real = asyncio.BaseEventLoop.create_connection

    async def slow_connect(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> Any:
        nonlocal opening, most_opening
        opening += 1
        most_opening = max(most_opening, opening)
        try:
            await asyncio.sleep(handshake)
            return await real(self, *args, **kwargs)
        finally:
            opening -= 1

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", slow_connect)

    async def run() -> None:
        server = Http10Server(keep_alive=True, delay=0.1)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=512)
        port = listener.sockets[0].getsockname()[1]
        transport = AsyncHTTP1Transport(max_connections=requests)
        async with listener, httpx.AsyncClient(transport=transport) as client:
            await client.get(f"http://127.0.0.1:{port}/first")  # a keep-alive origin
            replies = await asyncio.gather(
                *(client.get(f"http://127.0.0.1:{port}/{i}") for i in range(requests))
            )
            assert all(r.text == "ok" for r in replies)
            assert server.most_open == requests  # each request had its own connection

    asyncio.run(run())
    return most_opening


def test_loopback_connects_stay_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connects that take microseconds are never the bottleneck four at a time, and a
    burst of them would overflow a small local server's listen queue."""
    assert _peak_connects(monkeypatch, 0.0, 64) == MAX_CONNECTING


def test_connects_open_a_few_at_a_time_then_more_while_they_stay_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a link where each connect takes a round trip, connects ramp up like slow start.

    Four at a time would need 32 round trips to open 128 connections; one
    more per fast connect doubles the number opening at once each round
    trip, up to ``MOST_CONNECTING``.
    """
    peak = _peak_connects(monkeypatch, 0.02, 128)  # each connect: a 20 ms round trip
    assert MAX_CONNECTING < peak <= MOST_CONNECTING
    assert peak >= 32


def test_pacing_grows_over_a_network_not_on_loopback_and_halves_when_slow() -> None:
    pacer = _ConnectPacer()
    assert pacer.limit == MAX_CONNECTING
    for _ in range(50):
        pacer.record(0.0002)  # loopback: four at a time are never the bottleneck
    assert pacer.limit == MAX_CONNECTING
    for _ in range(12):
        pacer.record(0.02)  # a network round trip each
    assert pacer.limit == MAX_CONNECTING + 12
    pacer.record(1.05)  # a dropped SYN, retransmitted after a second
    assert pacer.limit == (MAX_CONNECTING + 12) // 2
    pacer.failed()
    assert pacer.limit == (MAX_CONNECTING + 12) // 4
    for _ in range(10):
        pacer.failed()
    assert pacer.limit == 1  # never none
    for _ in range(200):
        pacer.record(0.03)
    assert pacer.limit == MOST_CONNECTING
