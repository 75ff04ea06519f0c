"""Tile reads and ``rekorkit verify`` over HTTP/2 (ALPN over TLS, RFC 9113 §3.2).

The server is a small static file server on asyncio with the ``h2`` state
machine, serving the local log's tile directory over TLS with a certificate
from a test CA made in the test (trustme). It counts connections and streams,
so the tests can check that many reads shared one connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trustme
from rekorkit.audit import verify_tile_log
from rekorkit.cli import main
from rekorkit.client import AsyncTileReader
from rekorkit.client.adaptive import AdaptiveWindow, WindowGate
from rekorkit.errors import RekorKitError
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server

SEEDED = 2000


@dataclass
class Counts:
    connections: int = 0
    streams: int = 0
    alpn: list[str | None] = field(default_factory=list)


class _H2Files(asyncio.Protocol):
    """One connection serving files under ``root`` (GET only): HTTP/2 with flow control
    when ALPN chose h2, else one HTTP/1.1 request and close (as a CDN falls back)."""

    def __init__(self, root: Path, counts: Counts) -> None:
        self.root = root.resolve()
        self.counts = counts
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.pending: dict[int, bytes] = {}
        self.transport: asyncio.Transport | None = None
        self.http1: bytes | None = None  # the HTTP/1.1 request head read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        self.counts.connections += 1
        alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
        self.counts.alpn.append(alpn)
        if alpn != "h2":
            self.http1 = b""
            return
        self.conn.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.http1 is not None:
            self._http1(data)
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.counts.streams += 1
                # header_encoding="utf-8": names and values arrive as str.
                headers = {str(k): str(v) for k, v in event.headers or ()}
                path = headers.get(":path", "/")
                self._respond(event.stream_id, path)
            elif isinstance(event, h2.events.StreamReset):
                self.pending.pop(event.stream_id, None)
        self._flush()

    def _file(self, path: str) -> bytes | None:
        target = (self.root / path.lstrip("/")).resolve()
        if self.root not in target.parents or not target.is_file():
            return None
        return target.read_bytes()

    def _http1(self, data: bytes) -> None:
        self.http1 = (self.http1 or b"") + data
        if b"\r\n\r\n" not in self.http1 or self.transport is None:
            return
        path = self.http1.split(b" ", 2)[1].decode()
        body = self._file(path)
        status = b"200 OK" if body is not None else b"404 Not Found"
        body = body or b""
        head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        self.transport.write(head % (status, len(body)) + body)
        self.transport.close()

    def _respond(self, stream_id: int, path: str) -> None:
        body = self._file(path)
        if body is None:
            self.conn.send_headers(stream_id, [(":status", "404")], end_stream=True)
            return
        self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body)))])
        self.pending[stream_id] = body

    def _flush(self) -> None:
        for stream_id, body in list(self.pending.items()):
            while body:
                room = min(
                    self.conn.local_flow_control_window(stream_id),
                    self.conn.max_outbound_frame_size,
                    len(body),
                )
                if room <= 0:
                    break
                self.conn.send_data(stream_id, body[:room])
                body = body[room:]
            if body:
                self.pending[stream_id] = body
            else:
                del self.pending[stream_id]
                self.conn.end_stream(stream_id)
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())


@dataclass
class H2Server:
    url: str
    ca_file: Path
    counts: Counts


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
    with start_server(tmp_path_factory.mktemp("log"), seed=SEEDED, fsync=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def h2_server(log: LocalRekor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Server]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    counts = Counts()
    loop = asyncio.new_event_loop()
    root = log.data_dir / "tiles"
    server = loop.run_until_complete(
        loop.create_server(lambda: _H2Files(root, counts), "127.0.0.1", 0, ssl=context)
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield H2Server(f"https://127.0.0.1:{port}", ca_file, counts)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        server.close()
        loop.close()


def test_verify_over_http2_shares_one_connection(
    log: LocalRekor, h2_server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(h2_server.ca_file))
    before = h2_server.counts.connections, h2_server.counts.streams

    async def run() -> int:
        async with AsyncTileReader(h2_server.url, http2=True, max_concurrency=64) as reader:
            report = await verify_tile_log(reader, parse_verifier_key(log.checkpoint_vkey))
        return report.entries

    assert asyncio.run(run()) == SEEDED
    connections = h2_server.counts.connections - before[0]
    streams = h2_server.counts.streams - before[1]
    assert connections == 1  # every read multiplexed on one connection
    assert streams >= 2 * (SEEDED // 256)  # tiles and bundles, each a stream
    assert h2_server.counts.alpn[-1] == "h2"


def test_verify_command_picks_http2_for_https(
    log: LocalRekor,
    h2_server: H2Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Default flags over https: ALPN offers h2 and the command takes it (no flag needed)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(h2_server.ca_file))
    before = h2_server.counts.connections
    status = main(["verify", h2_server.url, "--key", log.checkpoint_vkey, "--no-store", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    assert report["entries"] == SEEDED
    new = h2_server.counts.alpn[before:]
    # The API probe and the verify run each open one connection, both h2.
    assert new == ["h2"] * len(new) and 1 <= len(new) <= 2, new


class _RecordingWindow(AdaptiveWindow):
    """An adaptive window that also keeps the connect times it was told."""

    def __init__(self) -> None:
        super().__init__()
        self.connects: list[float] = []

    def on_connect(self, seconds: float, now: float) -> None:
        self.connects.append(seconds)
        super().on_connect(seconds, now)


def test_async_reader_offers_http2_by_default_and_reports_its_connect(
    log: LocalRekor, h2_server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``http2`` argument: ALPN offers h2 (``"auto"``, h2 installed), one connection
    carries the batch, and its TCP connect time reaches the gate's window."""
    monkeypatch.setenv("SSL_CERT_FILE", str(h2_server.ca_file))
    before = len(h2_server.counts.alpn)
    window = _RecordingWindow()

    async def run() -> list[bytes]:
        async with AsyncTileReader(h2_server.url) as reader:
            reader.gate = WindowGate(window)
            return await reader.entry_bundles([(i, 256) for i in range(SEEDED // 256)])

    bundles = asyncio.run(run())
    assert len(bundles) == SEEDED // 256 and all(bundles)
    assert h2_server.counts.alpn[before:] == ["h2"]
    assert len(window.connects) == 1 and 0 < window.connects[0] < 10


@pytest.mark.parametrize("how", ["http2=False", "auto without h2"])
def test_http1_when_asked_or_when_h2_is_missing(
    log: LocalRekor, h2_server: H2Server, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(h2_server.ca_file))
    kwargs: dict[str, Any] = {}
    if how == "http2=False":
        kwargs["http2"] = False
    else:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "h2" else real(name, *a)
        )
        with pytest.raises(RekorKitError, match="http2"):
            AsyncTileReader(h2_server.url, http2=True)
    before = len(h2_server.counts.alpn)

    async def run() -> bytes:
        async with AsyncTileReader(h2_server.url, **kwargs) as reader:
            return await reader.tile(0, 0)

    assert len(asyncio.run(run())) == 256 * 32
    assert h2_server.counts.alpn[before:] == ["http/1.1"]


def test_untrusted_certificate_is_a_network_error(
    log: LocalRekor, h2_server: H2Server, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    status = main(["verify", h2_server.url, "--key", log.checkpoint_vkey, "--no-store"])
    assert status == 2
    assert "network error" in capsys.readouterr().err
