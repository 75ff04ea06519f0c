"""The lean transport against a server that closes every connection after one response.

Such a server (HTTP/1.0, ``python -m http.server``) costs a connect per
request; once the transport has seen it close, it keeps at most
``ONE_SHOT_CONNECTIONS`` connections open to it, so a burst of requests never
overflows the server's listen queue.
"""

from __future__ import annotations

import asyncio

import httpx
from rekorkit.client._transport import ONE_SHOT_CONNECTIONS, AsyncHTTP1Transport


class Http10Server:
    """Answers each request with HTTP/1.0 and closes; counts connections open at once."""

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
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
                await asyncio.sleep(0.005)
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
