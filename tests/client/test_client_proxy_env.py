"""The clients honour the environment as httpx does: proxies, NO_PROXY, SSL_CERT_FILE.

A forward/CONNECT proxy runs on 127.0.0.1 in the test. The log is named by a
host that does not resolve (``*.proxied.test``): the proxy maps every name to
127.0.0.1, so a read only succeeds if it really went through the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator

import anyio
import pytest
import trustme
from rekorkit.client import AsyncTileReader, RetryPolicy, TileReader
from rekorkit.client._transport import AsyncHTTP1Transport
from rekorkit.errors import RekorAPIError
from rekorkit.testing import LocalRekor, start_server

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Proxy(socketserver.ThreadingTCPServer):
    """HTTP forward proxy and CONNECT tunnel; every host is 127.0.0.1. Records what it saw."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: Proxy

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = client.recv(65536)
            if not data:
                return
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        self.server.seen.append(f"{method} {target}")
        if method == "CONNECT":
            port = int(target.rsplit(":", 1)[1])
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute-form request (RFC 9112 §3.2.2): forward in origin form
            authority, _, path = target.removeprefix("http://").partition("/")
            port = int(authority.rsplit(":", 1)[1]) if ":" in authority else 80
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            headers = [h for h in lines[1:] if not h.lower().startswith(("connection:", "proxy-"))]
            request = [f"{method} /{path} {version}", *headers, "Connection: close", "", ""]
            upstream.sendall("\r\n".join(request).encode("latin-1"))
        if rest:
            upstream.sendall(rest)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join(10)


@pytest.fixture(scope="module")
def log() -> Iterator[LocalRekor]:
    with start_server(seed=5, faults=False, fsync=False) as srv:
        yield srv


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = Proxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _proxied_url(log: LocalRekor) -> str:
    return log.url.replace("127.0.0.1", "log.proxied.test")


def test_http_proxy_sync_and_async(
    log: LocalRekor, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    url = _proxied_url(log)
    with TileReader(log.url, trust_env=False) as direct:
        expected = direct.checkpoint()
    with TileReader(url, retry=RetryPolicy.none()) as reader:
        assert reader.checkpoint() == expected

    async def main() -> bytes:
        async with AsyncTileReader(url, retry=RetryPolicy.none()) as reader:
            # A proxied origin never takes the lean transport: httpx's proxy transport does.
            assert not isinstance(reader._session.transport_for(url), AsyncHTTP1Transport)
            return await reader.tile(0, 0, 5)

    assert len(anyio.run(main)) == 5 * 32
    assert proxy.seen == [f"GET {url}/checkpoint", f"GET {url}/tile/0/000.p/5"]


def test_no_proxy_and_trust_env_off_bypass_the_proxy(
    log: LocalRekor, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,log.proxied.test")
    with TileReader(log.url, retry=RetryPolicy.none()) as reader:
        assert reader.checkpoint().startswith(log.origin.encode())
    with (
        TileReader(_proxied_url(log), retry=RetryPolicy.none()) as reader,
        pytest.raises(RekorAPIError),
    ):
        reader.checkpoint()  # direct: the name does not resolve
    monkeypatch.delenv("NO_PROXY")

    async def main() -> bytes:
        async with AsyncTileReader(log.url, retry=RetryPolicy.none(), trust_env=False) as r:
            assert isinstance(r._session.transport_for(log.url), AsyncHTTP1Transport)
            return await r.checkpoint()

    assert anyio.run(main).startswith(log.origin.encode())
    assert proxy.seen == []


class _TLSCheckpoint(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _TLSHandler)
        self.context = context


class _TLSHandler(socketserver.BaseRequestHandler):
    server: _TLSCheckpoint

    def handle(self) -> None:
        try:
            with self.server.context.wrap_socket(self.request, server_side=True) as tls:
                tls.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                body = b"tls.proxied.test\n1\nAAAA\n"
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
        except (OSError, ssl.SSLError):
            return


def test_https_proxy_connect_with_ssl_cert_file(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("tls.proxied.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    tls = _TLSCheckpoint(server_ctx)
    threading.Thread(target=tls.serve_forever, daemon=True).start()
    try:
        ca_file = f"{tmp_path}/ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        url = f"https://tls.proxied.test:{tls.server_address[1]}"
        with (
            TileReader(url, retry=RetryPolicy.none()) as reader,
            pytest.raises(RekorAPIError),  # the test CA is not trusted yet
        ):
            reader.checkpoint()
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        with TileReader(url, retry=RetryPolicy.none()) as reader:
            assert reader.checkpoint() == b"tls.proxied.test\n1\nAAAA\n"

        async def main() -> bytes:
            async with AsyncTileReader(url, retry=RetryPolicy.none()) as reader:
                return await reader.checkpoint()

        assert anyio.run(main) == b"tls.proxied.test\n1\nAAAA\n"
        assert proxy.seen == [f"CONNECT tls.proxied.test:{tls.server_address[1]}"] * 3
    finally:
        tls.shutdown()
        tls.server_close()
