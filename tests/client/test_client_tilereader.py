"""TileReader / AsyncTileReader over httpx.MockTransport: paths, fallbacks, gzip, limits."""

from __future__ import annotations

import gzip
import hashlib

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rekorkit.client import AsyncTileReader, RetryPolicy, TileReader
from rekorkit.client.tilereader import bundle_entry, bundle_path, tile_path
from rekorkit.errors import MalformedError, NotFoundError, RetryExhaustedError

GZIP = {"content-encoding": "gzip"}
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)


def fake_tile(level: int, index: int, width: int) -> bytes:
    return b"".join(hashlib.sha256(b"%d/%d/%d" % (level, index, j)).digest() for j in range(width))


def bundle(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


@pytest.mark.parametrize(
    ("index", "path"),
    [(5, "005"), (1000, "x001/000"), (1234067, "x001/x234/067"), (123456789, "x123/x456/789")],
)
def test_paths(index: int, path: str) -> None:
    assert tile_path(0, index) == f"tile/0/{path}"
    assert tile_path(2, index, 17) == f"tile/2/{path}.p/17"
    assert bundle_path(index, 3) == f"tile/entries/{path}.p/3"


def test_path_bad_input() -> None:
    with pytest.raises(ValueError):
        tile_path(64, 0)
    with pytest.raises(ValueError):
        tile_path(0, -1)


def test_tile_partial_and_full() -> None:
    requested: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        requested.append(r.url.path)
        if r.url.path == "/log/tile/0/x001/234.p/5":
            return httpx.Response(200, content=fake_tile(0, 1234, 5))
        if r.url.path == "/log/tile/1/000":
            return httpx.Response(200, content=fake_tile(1, 0, 256))
        return httpx.Response(404)

    with TileReader("http://t.test/log/", transport=httpx.MockTransport(handler)) as rd:
        assert rd.tile(0, 1234, 5) == fake_tile(0, 1234, 5)
        assert rd.tile(1, 0) == fake_tile(1, 0, 256)
        assert rd.read_tile(1, 0, 256) == fake_tile(1, 0, 256)
    assert requested == ["/log/tile/0/x001/234.p/5", "/log/tile/1/000", "/log/tile/1/000"]


def test_partial_404_falls_back_to_full_tile() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/tile/0/007":
            return httpx.Response(200, content=fake_tile(0, 7, 256))
        return httpx.Response(404)

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler))
    assert rd.tile(0, 7, 9) == fake_tile(0, 7, 256)[: 9 * 32]


def test_missing_full_tile_is_not_found() -> None:
    rd = TileReader("http://t.test", transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(NotFoundError):
        rd.tile(0, 1)


def test_short_tile_is_malformed() -> None:
    rd = TileReader(
        "http://t.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 33)),
    )
    with pytest.raises(MalformedError) as info:
        rd.tile(0, 0, 2)
    assert info.value.what == "hash tile"


def test_oversized_tile_is_refused() -> None:
    rd = TileReader(
        "http://t.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * (8192 + 32))),
    )
    with pytest.raises(MalformedError, match="limit"):
        rd.tile(0, 0)


def test_entry_bundle_gzip_encoded_and_raw_gzip() -> None:
    entries = [b"one", b"two", b"three"]
    data = bundle(entries)

    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/tile/entries/000.p/3":
            return httpx.Response(
                200, content=gzip.compress(data), headers={"content-encoding": "gzip"}
            )
        if r.url.path == "/tile/entries/001.p/3":
            return httpx.Response(200, content=gzip.compress(data))  # gzip without the header
        return httpx.Response(404)

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler))
    assert rd.entry_bundle(0, 3) == data
    assert rd.entry_bundle(1, 3) == data


def test_entry_bundle_partial_fallback_truncates() -> None:
    full = bundle([b"e%d" % i for i in range(256)])

    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/tile/entries/002":
            return httpx.Response(200, content=full)
        return httpx.Response(404)

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler))
    assert rd.entry_bundle(2, 2) == bundle([b"e0", b"e1"])


def test_entry_bundle_too_few_entries() -> None:
    rd = TileReader(
        "http://t.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=bundle([b"a"]))),
    )
    with pytest.raises(MalformedError) as info:
        rd.entry_bundle(0, 2)
    assert info.value.where == "byte 3, entry 1"
    assert "entry bundle 0 from" in str(info.value)


def test_checkpoint_and_retry_on_503() -> None:
    calls = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, text="origin\n1\nAAAA\n\n— x y\n")

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler), retry=NO_WAIT)
    assert rd.checkpoint().startswith(b"origin\n")
    assert len(calls) == 2


def test_dropped_connections_exhaust() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=r)

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler), retry=NO_WAIT)
    with pytest.raises(RetryExhaustedError) as info:
        rd.tile(0, 0)
    assert len(info.value.attempts) == 3


def test_width_validation() -> None:
    rd = TileReader("http://t.test", transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(ValueError):
        rd.tile(0, 0, 0)
    with pytest.raises(ValueError):
        rd.tile(0, 0, 257)


def test_async_tiles_bounded_concurrency_in_order() -> None:
    in_flight = 0
    peak = 0

    async def handler(r: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.001)
        in_flight -= 1
        parts = r.url.path.split("/")
        return httpx.Response(200, content=fake_tile(int(parts[2]), int(parts[3]), 256))

    async def main() -> list[bytes]:
        async with AsyncTileReader(
            "http://t.test", transport=httpx.MockTransport(handler), max_concurrency=4
        ) as rd:
            return await rd.tiles([(0, i, 256) for i in range(40)])

    out = anyio.run(main)
    assert out == [fake_tile(0, i, 256) for i in range(40)]
    assert peak <= 4


def test_async_partial_fallback_and_bundles() -> None:
    data = bundle([b"a", b"bb"])

    async def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/tile/0/000":
            return httpx.Response(200, content=fake_tile(0, 0, 256))
        if r.url.path == "/tile/entries/000.p/2":
            return httpx.Response(
                200, content=gzip.compress(data), headers={"content-encoding": "gzip"}
            )
        if r.url.path == "/checkpoint":
            return httpx.Response(200, text="cp")
        return httpx.Response(404)

    async def main() -> tuple[bytes, list[bytes], bytes, bytes]:
        async with AsyncTileReader("http://t.test", transport=httpx.MockTransport(handler)) as rd:
            t = await rd.read_tile(0, 0, 3)
            b = await rd.entry_bundles([(0, 2)])
            return t, b, await rd.checkpoint(), await rd.tile(0, 0)

    t, b, cp, full = anyio.run(main)
    assert t == fake_tile(0, 0, 3)
    assert b == [data]
    assert cp == b"cp"
    assert full == fake_tile(0, 0, 256)


@given(st.integers(0, 10**15), st.integers(1, 256))
def test_tile_path_groups(index: int, width: int) -> None:
    path = tile_path(3, index, width)
    body, _, suffix = path.partition(".p/")
    groups = body.split("/")[2:]
    assert all(len(g) == 4 and g[0] == "x" for g in groups[:-1])
    assert len(groups[-1]) == 3 and groups[-1].isdigit()
    assert int("".join(g.lstrip("x") for g in groups)) == index
    assert suffix == ("" if width == 256 else str(width))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20), st.data())
def test_bundle_entry_roundtrip(entries: list[bytes], data: st.DataObject) -> None:
    raw = bundle(entries)
    i = data.draw(st.integers(0, len(entries) - 1))
    assert bundle_entry(raw, i) == entries[i]
    with pytest.raises(MalformedError):
        bundle_entry(raw, len(entries))
    with pytest.raises(MalformedError):
        bundle_entry(raw[:-1], len(entries) - 1)  # the last entry is cut short


def test_tile_cache_serves_repeats_without_requests() -> None:
    calls: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(r.url.path)
        return httpx.Response(200, content=fake_tile(0, 0, 256))

    rd = TileReader("http://t.test", transport=httpx.MockTransport(handler), cache_tiles=2)
    for _ in range(3):
        assert rd.tile(0, 0) == fake_tile(0, 0, 256)
    rd.tile(0, 1)
    rd.tile(0, 2)  # evicts 0/000
    rd.tile(0, 0)
    assert calls == ["/tile/0/000", "/tile/0/001", "/tile/0/002", "/tile/0/000"]
    plain = TileReader("http://t.test", transport=httpx.MockTransport(handler))
    plain.tile(0, 0)
    plain.tile(0, 0)
    assert calls[-2:] == ["/tile/0/000", "/tile/0/000"]


def _tiles_and_bundles(rd: AsyncTileReader) -> tuple[list[bytes | Exception], ...]:
    async def main() -> tuple[list[bytes | Exception], ...]:
        async with rd:
            return (
                await rd.tiles([(0, i, 256) for i in range(4)], return_exceptions=True),
                await rd.entry_bundles([(0, 1), (1, 256), (2, 1)], return_exceptions=True),
            )

    return anyio.run(main)


def _serve(path: str) -> tuple[int, bytes]:
    parts = path.strip("/").split("/")
    if path == "/tile/0/002":
        return 200, b"short"  # not a whole number of hashes
    if path == "/tile/entries/001":  # a full bundle has no fallback
        return 404, b""
    if parts[1] == "entries":
        return 200, bundle([b"e"])
    return 200, fake_tile(0, int(parts[2]), 256)


def _check_batch_results(
    tiles_out: list[bytes | Exception], bundles_out: list[bytes | Exception]
) -> None:
    assert tiles_out[0] == fake_tile(0, 0, 256) and tiles_out[3] == fake_tile(0, 3, 256)
    assert isinstance(tiles_out[2], MalformedError) and "tile 0/2" in str(tiles_out[2])
    assert bundles_out[0] == bundles_out[2] == bundle([b"e"])
    assert isinstance(bundles_out[1], NotFoundError)


def test_async_batches_return_exceptions_in_place() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        status, body = _serve(r.url.path)
        return httpx.Response(status, content=body)

    rd = AsyncTileReader("http://t.test", transport=httpx.MockTransport(handler), retry=NO_WAIT)
    _check_batch_results(*_tiles_and_bundles(rd))


def test_own_transport_batches_return_exceptions_in_place() -> None:
    # No transport given: batches run over the reader's own HTTP/1.1 transport.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = _serve(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rd = AsyncTileReader(url, retry=NO_WAIT)
        _check_batch_results(*_tiles_and_bundles(rd))

        async def plain() -> list[bytes]:
            async with AsyncTileReader(url, retry=NO_WAIT) as reader:
                return await reader.tiles([(0, 1, 256), (0, 2, 256)])

        with pytest.raises(MalformedError):  # without the flag the first failure raises
            anyio.run(plain)
    finally:
        server.shutdown()
        server.server_close()
