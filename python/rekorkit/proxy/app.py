"""The proxy's ASGI application (Starlette): tlog-tiles reads, health, metrics, status.

Routes (c2sp.org/tlog-tiles paths, as the upstream serves them):

* ``GET /checkpoint``: the latest checkpoint the proxy verified;
* ``GET /tile/<L>/<N>[.p/<W>]`` and ``GET /tile/entries/<N>[.p/<W>]``:
  verified tiles and bundles;
* ``GET /healthz``, ``GET /metrics`` (Prometheus), ``GET /_admin/status``
  (loopback clients only).

Full tiles are ``Cache-Control: immutable``; the checkpoint and partial
tiles get a short ``max-age``. Every body has a strong ``ETag`` (its SHA-256)
and ``If-None-Match`` answers 304 (RFC 9110 §13.1.2). Entry bundles are
gzipped for clients that accept it; hash tiles are random bytes that gzip
cannot shrink, so they are sent as they are. Upstream data that does not
verify is answered with 502 and the evidence as JSON; an upstream outage
with nothing cached with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import cachetools
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rekorkit.errors import MalformedError, RekorAPIError, VerificationError
from rekorkit.proxy.service import NotInTreeError, ProxyService, Served
from rekorkit.proxy.sync import SyncJob
from rekorkit.server.faults import is_loopback
from rekorkit.tiles import parse_tile_path

__all__ = ["create_app"]

IMMUTABLE = "public, max-age=31536000, immutable"
PARTIAL = "public, max-age=60"
_GZIP_MIN = 512  # smaller bodies are not worth a gzip header


def _json(value: Any, status: int = 200) -> Response:
    def default(v: object) -> str:
        return bytes(v).hex() if isinstance(v, bytes | bytearray) else str(v)

    body = json.dumps(value, default=default, indent=None, sort_keys=True).encode()
    return Response(body, status_code=status, media_type="application/json")


def _failure(exc: BaseException, status: int) -> Response:
    evidence = getattr(exc, "evidence", None) or {}
    return _json(
        {"error": str(exc), "type": type(exc).__name__, "evidence": evidence}, status=status
    )


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


class _Gzipped:
    """Gzipped bodies by ETag, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._cache: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(
            maxsize=max_bytes, getsizeof=len
        )

    def get(self, served: Served) -> bytes:
        body = self._cache.get(served.etag)
        if body is None:
            body = gzip.compress(served.body, compresslevel=6, mtime=0)
            self._cache[served.etag] = body
        return body


def _respond(request: Request, served: Served, cache_control: str, kind: str) -> Response:
    headers = {"ETag": served.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if _etag_matches(request, served.etag):
        return Response(status_code=304, headers=headers)
    body = served.body
    if (
        kind != "tile"
        and len(body) >= _GZIP_MIN
        and "gzip" in request.headers.get("accept-encoding", "")
    ):
        body = request.app.state.gzipped.get(served)
        headers["Content-Encoding"] = "gzip"
    request.app.state.service.metrics.served_bytes.labels(kind).inc(len(body))
    media = "text/plain; charset=utf-8" if kind == "checkpoint" else "application/octet-stream"
    return Response(body, headers=headers, media_type=media)


async def checkpoint(request: Request) -> Response:
    """``GET /checkpoint``: the latest verified checkpoint."""
    service: ProxyService = request.app.state.service
    try:
        cp = await service.current_checkpoint()
    except (VerificationError, MalformedError) as exc:
        return _failure(exc, 502)
    except RekorAPIError as exc:
        return _failure(exc, 503)
    ttl = max(1, int(service.checkpoint_ttl))
    served = request.app.state.checkpoints.get(cp.raw)
    if served is None:
        served = request.app.state.checkpoints[cp.raw] = Served(
            cp.raw, f'"{cp.root.hex()}-{cp.size}"', False
        )
    return _respond(request, served, f"public, max-age={ttl}", "checkpoint")


async def tile(request: Request) -> Response:
    """``GET /tile/...``: a verified hash tile or entry bundle."""
    service: ProxyService = request.app.state.service
    path = request.url.path.lstrip("/")
    try:
        tid, entries = parse_tile_path(path)
    except MalformedError as exc:
        return _failure(exc, 400)
    try:
        if entries:
            served = await service.bundle(tid.index, tid.width)
        else:
            served = await service.tile(tid.level, tid.index, tid.width)
    except NotInTreeError as exc:
        return _failure(exc, 404)
    except (VerificationError, MalformedError) as exc:
        return _failure(exc, 502)
    except RekorAPIError as exc:
        return _failure(exc, 503)
    kind = "entries" if entries else "tile"
    return _respond(request, served, IMMUTABLE if served.immutable else PARTIAL, kind)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 once a verified checkpoint can be served, else 503."""
    service: ProxyService = request.app.state.service
    cp = service.checkpoint
    body = {
        "status": "ok" if cp is not None else "no verified checkpoint",
        "size": cp.size if cp is not None else None,
        "upstream_refused": service.refused is not None,
    }
    return _json(body, 200 if cp is not None else 503)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    service: ProxyService = request.app.state.service
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")


async def admin_status(request: Request) -> Response:
    """``GET /_admin/status``: checkpoint, upstream, last error, cache and sync job."""
    if not is_loopback(request.client.host if request.client else None):
        return _json({"error": "the admin endpoint answers loopback clients only"}, 403)
    service: ProxyService = request.app.state.service
    cp = service.checkpoint
    stats = await asyncio.to_thread(service.cache.stats)
    job: SyncJob | None = request.app.state.job
    return _json(
        {
            "upstream": list(service.upstream_urls),
            "checkpoint": None
            if cp is None
            else {"origin": cp.origin, "size": cp.size, "root": cp.root, "note": cp.raw.decode()},
            "upstream_size": service.upstream_size,
            "last_refresh": service.last_refresh,
            "last_error": service.last_error,
            "refusing_upstream": service.refused is not None,
            "cache": {
                "directory": str(service.cache.directory),
                "tiles": stats.tiles,
                "bytes": stats.bytes,
                "max_bytes": stats.max_bytes,
                "pinned_size": stats.pinned_size,
                "dropped_corrupt": stats.dropped_corrupt,
                "evicted": stats.evicted,
            },
            "sync": None if job is None else job.status.to_json(),
            "time": time.time(),
        }
    )


def create_app(
    service: ProxyService, *, job: SyncJob | None = None, mirror: ASGIApp | None = None
) -> ASGIApp:
    """The proxy's ASGI app; its lifespan resumes the service and runs ``job``.

    ``mirror`` (a ``create_mirror_app``) answers every other path: the proxy is
    then also a c2sp.org/tlog-mirror mirror that logs push to.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        task = asyncio.create_task(job.run()) if job is not None else None
        try:
            yield
        finally:
            if job is not None and task is not None:
                job.stop()
                await task  # the batch in hand finishes and its progress is saved
            await service.aclose()

    app = Starlette(
        routes=[
            Route("/checkpoint", checkpoint, methods=["GET", "HEAD"]),
            Route("/tile/{rest:path}", tile, methods=["GET", "HEAD"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/_admin/status", admin_status, methods=["GET"]),
            *([Mount("", app=mirror)] if mirror is not None else []),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.job = job
    app.state.gzipped = _Gzipped(16 << 20)
    app.state.checkpoints = cachetools.LRUCache(maxsize=8)
    return _TileFastPath(app)


class _TileFastPath:
    """Tile reads (the bulk of the traffic) skip Starlette's middleware and router.

    Everything else, the lifespan included, goes to the Starlette app.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/tile/")
            and scope["method"] in ("GET", "HEAD")
        ):
            scope["app"] = self.app
            response = await tile(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
