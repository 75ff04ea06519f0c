"""The tile proxy against real servers: a local log, a lying upstream in front of it,
and the proxy itself, all on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit.note import parse_verifier_key
from rekorkit.proxy import ProxyService, SyncJob, create_app
from rekorkit.testing import LocalRekor, start_server
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import TileID, parse_tile_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Serve = Callable[[Any], AbstractContextManager[str]]


class LyingUpstream:
    """Forwards to a real log, tampering with what ``tamper`` names; counts requests."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.tamper: dict[str, Callable[[bytes], bytes]] = {}
        self.requests: Counter[str] = Counter()
        self.down = False
        self.app = Starlette(routes=[Route("/{path:path}", self.forward)])

    async def forward(self, request: Request) -> Response:
        path = request.url.path.lstrip("/")
        self.requests[path] += 1
        if self.down:
            return Response(b"upstream down", status_code=503)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{self.target}/{path}")
        body = r.content
        if r.status_code == 200 and path in self.tamper:
            body = self.tamper[path](body)
        return Response(body, status_code=r.status_code)


def _metric(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith("rekorkit_proxy_" + name)]
    return float(line.rsplit(" ", 1)[1])


def _flip(data: bytes) -> bytes:
    return data[:40] + bytes([data[40] ^ 1]) + data[41:]


@pytest.fixture(scope="module")
def log() -> Iterator[LocalRekor]:
    with start_server(seed=1000) as srv:  # tiles 0..2 full, tile 3 partial (232)
        yield srv


@pytest.fixture
def upstream(log: LocalRekor, serve: Serve) -> Iterator[tuple[LyingUpstream, str]]:
    liar = LyingUpstream(log.url)
    with serve(liar.app) as url:
        yield liar, url


def _service(url: str, cache_dir: Path, log: LocalRekor, **kw: Any) -> ProxyService:
    return ProxyService(
        url, FileSystemTileCache(cache_dir), parse_verifier_key(log.checkpoint_vkey), **kw
    )


def test_serves_what_the_log_serves_with_caching_headers(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    _, up = upstream
    svc = _service(up, tmp_path, log)
    with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
        cp = c.get("/checkpoint")
        assert cp.status_code == 200 and cp.content == httpx.get(log.url + "/checkpoint").content
        assert cp.headers["cache-control"] == "public, max-age=5"
        for path in ["tile/0/001", "tile/0/003.p/232", "tile/1/000.p/3", "tile/entries/002"]:
            r = c.get("/" + path)
            assert r.status_code == 200, r.text
            assert r.content == httpx.get(f"{log.url}/{path}").content
            assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
            partial = ".p/" in path
            assert ("immutable" in r.headers["cache-control"]) is not partial
            again = c.get("/" + path, headers={"if-none-match": r.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
        # An older, narrower partial is the prefix of the verified tile.
        assert c.get("/tile/0/003.p/5").content == c.get("/tile/0/003.p/232").content[: 5 * 32]
        # Bundles gzip for clients that accept it; hash tiles do not.
        raw = c.get("/tile/entries/001", headers={"accept-encoding": "identity"}).content
        with httpx.stream(
            "GET", url + "/tile/entries/001", headers={"accept-encoding": "gzip"}
        ) as r:
            assert r.headers["content-encoding"] == "gzip"
            assert gzip.decompress(b"".join(r.iter_raw())) == raw
        r = c.get("/tile/0/000", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in r.headers
        # Beyond the verified tree: 404, not a guess.
        assert c.get("/tile/0/004").status_code == 404
        assert c.get("/tile/entries/003.p/233").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/tile/0/1234",
        "/tile/0/x001/2.p/0",
        "/tile/entries/000.p/256",
        "/tile/64/000",
        "/tile/0/000.p/",
        "/tile/..%2F..%2Fetc/passwd",
        "/tile/0/../../../etc/passwd",
        "/tile/0/%2e%2e/000",
    ],
)
def test_malformed_and_traversal_paths_are_400(
    log: LocalRekor, serve: Serve, tmp_path: Path, path: str
) -> None:
    svc = _service(log.url, tmp_path / "cache", log)
    with serve(create_app(svc)) as url:
        host, port = url.removeprefix("http://").split(":")
        # A raw request: an HTTP client would normalise the dot segments away.
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"tile path" in reply or b"MalformedError" in reply
    assert svc.cache.stats().tiles == 0


def test_tampered_tile_is_refused_with_evidence_and_not_cached(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    liar, up = upstream
    liar.tamper["tile/0/001"] = _flip
    svc = _service(up, tmp_path, log)
    with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
        r = c.get("/tile/0/001")
        assert r.status_code == 502
        body = r.json()
        assert body["type"] == "TileError"
        ev = body["evidence"]
        assert ev["path"] == "tile/0/001" and ev["level"] == 0 and ev["index"] == 1
        assert ev["expected"] != ev["actual"]
        assert ev["checkpoint"]  # the signed checkpoint it was checked against
        assert svc.cache.get(TileID(0, 1)) is None
        # The bundle of that tile cannot be verified either, so it is refused too.
        assert c.get("/tile/entries/001").status_code == 502
        assert svc.cache.get(TileID(0, 1), entries=True) is None
        # Untampered neighbours are served; the failure is visible to operators.
        assert c.get("/tile/0/000").status_code == 200
        status = c.get("/_admin/status").json()
        assert status["last_error"]["type"] == "TileError"
        assert _metric(c.get("/metrics").text, 'verification_failures_total{kind="tile"}') >= 1
        # Once the upstream tells the truth the tile is served.
        del liar.tamper["tile/0/001"]
        assert c.get("/tile/0/001").status_code == 200


def test_tampered_bundle_is_refused_and_not_cached(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    liar, up = upstream
    liar.tamper["tile/entries/002"] = lambda b: b[:-1] + bytes([b[-1] ^ 0x55])
    svc = _service(up, tmp_path, log)
    with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
        r = c.get("/tile/entries/002")
        assert r.status_code == 502
        ev = r.json()["evidence"]
        assert ev["path"] == "tile/entries/002" and ev["index"] == 2
        assert svc.cache.get(TileID(0, 2), entries=True) is None
        assert svc.cache.get(TileID(0, 2)) is not None  # the tile itself verified
        liar.tamper["tile/entries/002"] = lambda b: b[:100]  # truncated: does not parse
        assert c.get("/tile/entries/002").status_code == 502
        assert svc.cache.get(TileID(0, 2), entries=True) is None


def test_tampered_checkpoint_is_refused(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    liar, up = upstream
    liar.tamper["checkpoint"] = lambda b: b.replace(b"\n1000\n", b"\n999\n")
    svc = _service(up, tmp_path, log)
    with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
        r = c.get("/checkpoint")
        assert r.status_code == 502
        assert r.json()["type"] == "SignatureError"
        assert "999" in r.json()["evidence"]["checkpoint"]
        assert c.get("/healthz").status_code == 503
        assert c.get("/tile/0/000").status_code in (502, 503)
        assert svc.cache.stats().tiles == 0 and svc.cache.get_state("proxy.checkpoint") is None
        # Edge tiles that do not hash to the signed root: refused as well.
        liar.tamper.clear()
        liar.tamper["tile/0/003.p/232"] = _flip
        r = c.get("/checkpoint")
        assert r.status_code == 502 and r.json()["type"] == "TileError"
        assert svc.cache.stats().tiles == 0


def test_split_view_is_refused_and_the_verified_checkpoint_kept(
    serve: Serve, tmp_path: Path
) -> None:
    with start_server(seed=600) as srv:
        svc = _service(srv.url, tmp_path, srv, checkpoint_ttl=0.0)
        with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
            good = c.get("/checkpoint").content
            srv.fork(at=300, extra=400)  # size 700, validly signed, not consistent with 600
            r = c.get("/checkpoint")
            assert r.status_code == 502
            body = r.json()
            assert body["type"] == "DivergenceError"
            assert body["evidence"]["old_size"] == 600 and body["evidence"]["new_size"] == 700
            assert svc.checkpoint is not None and svc.checkpoint.raw == good
            assert svc.cache.get_state("proxy.checkpoint") == good
            srv.unfork()
            assert c.get("/checkpoint").content == good


def test_outage_serves_cache_and_last_checkpoint(serve: Serve, tmp_path: Path) -> None:
    srv = start_server(seed=700)
    vkey = srv.checkpoint_vkey
    liar = LyingUpstream(srv.url)
    with serve(liar.app) as up:
        svc = _service(up, tmp_path, srv, checkpoint_ttl=0.0)
        with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
            cp = c.get("/checkpoint").content
            bundle = c.get("/tile/entries/000").content
            tile = c.get("/tile/0/001").content
            liar.down = True
            srv.stop()
            assert c.get("/checkpoint").content == cp  # the last verified one
            assert c.get("/tile/entries/000").content == bundle
            assert c.get("/tile/0/001").content == tile
            r = c.get("/tile/entries/001")  # never cached: the outage shows
            assert r.status_code == 503
            assert c.get("/healthz").status_code == 200
        # A restarted proxy serves the same from disk, without the upstream.
        svc2 = ProxyService(up, FileSystemTileCache(tmp_path), parse_verifier_key(vkey))
        with serve(create_app(svc2)) as url, httpx.Client(base_url=url) as c:
            assert c.get("/checkpoint").content == cp
            assert c.get("/tile/0/001").content == tile
            assert c.get("/tile/entries/000").content == bundle


def test_concurrent_requests_share_one_upstream_fetch(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    liar, up = upstream
    svc = _service(up, tmp_path, log)
    with serve(create_app(svc)) as url:

        async def many() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url) as c:
                await c.get("/checkpoint")
                return await asyncio.gather(*(c.get("/tile/entries/001") for _ in range(30)))

        responses = asyncio.run(many())
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert liar.requests["tile/entries/001"] == 1
    assert liar.requests["tile/0/001"] == 1


def test_mirror_sync_caches_every_tile_verified_and_resumes(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], tmp_path: Path
) -> None:
    liar, up = upstream

    async def mirror(batch: int) -> tuple[SyncJob, FileSystemTileCache]:
        svc = _service(up, tmp_path, log)
        job = SyncJob(svc, mode="mirror", batch_tiles=batch)
        await svc.start()
        await job.run_once()
        await svc.aclose()
        return job, svc.cache

    liar.tamper["tile/entries/002"] = _flip
    job, cache = asyncio.run(mirror(2))
    assert job.status.last_error is not None and job.status.last_error["type"] == "TileError"
    assert cache.get_state("proxy.mirror_next_tile") == b"2"  # batch 0-1 done, 2-3 refused
    assert cache.get(TileID(0, 1), entries=True) is not None
    assert cache.get(TileID(0, 2), entries=True) is None
    del liar.tamper["tile/entries/002"]
    before = liar.requests["tile/entries/000"]
    job, cache = asyncio.run(mirror(2))
    assert job.status.last_error is None and job.status.mirrored_entries == 1000
    assert liar.requests["tile/entries/000"] == before  # resumed: not fetched again
    for path in ["tile/entries/000", "tile/entries/003.p/232", "tile/0/002", "tile/1/000.p/3"]:
        assert cache.get_path(path) == httpx.get(f"{log.url}/{path}").content
    assert cache.get_state("proxy.mirror_next_tile") == b"3"  # the partial tile is redone
    # Level-0 tiles are rebuilt from the verified bundles, never read from the upstream.
    assert [liar.requests[f"tile/0/00{i}"] for i in range(3)] == [0, 0, 0]


def test_edge_sync_and_status_endpoints(
    log: LocalRekor, upstream: tuple[LyingUpstream, str], serve: Serve, tmp_path: Path
) -> None:
    _, up = upstream
    svc = _service(up, tmp_path, log)
    job = SyncJob(svc, mode="edge", interval=0.05)
    with serve(create_app(svc, job=job)) as url, httpx.Client(base_url=url) as c:
        for _ in range(200):
            if job.status.last_success is not None:
                break
            asyncio.run(asyncio.sleep(0.02))
        status = c.get("/_admin/status").json()
        assert status["sync"]["mode"] == "edge" and status["sync"]["last_error"] is None
        assert status["checkpoint"]["size"] == 1000
        assert status["cache"]["pinned_size"] == 1000
        for path in ["tile/0/002", "tile/entries/003.p/232", "tile/entries/002"]:
            tid, entries = parse_tile_path(path)
            assert svc.cache.get(tid, entries=entries) is not None
        assert c.get("/healthz").json() == {
            "size": 1000,
            "status": "ok",
            "upstream_refused": False,
        }
        text = c.get("/metrics").text
        assert "rekorkit_proxy_checkpoint_size 1000.0" in text
        assert 'rekorkit_proxy_sync_runs_total{outcome="ok"}' in text
        assert "rekorkit_proxy_upstream_latency_seconds_bucket" in text


def test_a_growing_log_is_followed_with_consistency_proofs(serve: Serve, tmp_path: Path) -> None:
    import hashlib as _h

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from rekorkit.client import AsyncRekorV2Client
    from rekorkit.entries import hashedrekord_v002_request

    key = ec.generate_private_key(ec.SECP256R1())

    def request(n: int) -> dict[str, object]:
        digest = _h.sha256(b"grow %d" % n).digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return hashedrekord_v002_request(digest, sig, key.public_key())

    async def grow(url: str, pem: str, vkey: str, n: int) -> None:
        verifier = parse_verifier_key(vkey)
        async with AsyncRekorV2Client(url, public_key=pem, verifier=verifier) as log:
            await log.submit_many([request(i) for i in range(n)])

    with start_server(seed=600, fsync=False) as srv:
        svc = _service(srv.url, tmp_path, srv, checkpoint_ttl=0.0)
        with serve(create_app(svc)) as url, httpx.Client(base_url=url) as c:
            assert c.get("/tile/entries/002.p/88").status_code == 200
            asyncio.run(grow(srv.url, srv.checkpoint_public_key_pem, srv.checkpoint_vkey, 300))
            asyncio.run(asyncio.sleep(1.1))  # past the proxy's refresh floor
            r = c.get("/tile/entries/003.p/132")  # beyond the proxy's tree: it catches up
            assert r.status_code == 200
            assert r.content == httpx.get(srv.url + "/tile/entries/003.p/132").content
            assert svc.checkpoint is not None and svc.checkpoint.size == 900
            assert c.get("/tile/0/002").status_code == 200  # the tile that filled up
            assert (
                c.get("/tile/entries/002.p/88").content
                == c.get("/tile/entries/002").content[
                    : len(c.get("/tile/entries/002.p/88").content)
                ]
            )
