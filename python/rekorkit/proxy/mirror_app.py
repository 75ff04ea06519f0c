"""The HTTP face of a :class:`~rekorkit.proxy.tlogmirror.TlogMirror` (Starlette).

Write API (c2sp.org/tlog-mirror, the submission prefix is the root):
``POST /add-checkpoint`` and ``POST /add-entries`` (``Content-Encoding: gzip``
accepted). Read API (the monitoring prefix is the root): the copy at
``/<hex SHA-256 of the origin>/checkpoint`` (with the mirror's cosignature)
and ``/<hex SHA-256 of the origin>/tile/...`` (c2sp.org/tlog-tiles).
"""

from __future__ import annotations

import asyncio
import sqlite3
import zlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from rekorkit.errors import MalformedError
from rekorkit.proxy.app import IMMUTABLE, PARTIAL
from rekorkit.proxy.tlogmirror import MirrorReply, TlogMirror
from rekorkit.tiles import parse_tile_path

__all__ = ["create_mirror_app"]

_NO_CACHE = {"Cache-Control": "no-cache"}  # the mirror checkpoint moves


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped if sent so, refusing more than ``limit`` bytes."""
    gzipped = request.headers.get("content-encoding", "identity").lower() == "gzip"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    out = bytearray()
    async for chunk in request.stream():
        out += inflate.decompress(chunk, limit + 1 - len(out)) if inflate else chunk
        if len(out) > limit or (inflate is not None and inflate.unconsumed_tail):
            raise _TooLarge
    if inflate is not None:
        out += inflate.flush()
    if len(out) > limit:
        raise _TooLarge
    return bytes(out)


def _reply(reply: MirrorReply) -> Response:
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers={"Accept-Encoding": "gzip"},
    )


def create_mirror_app(mirror: TlogMirror) -> ASGIApp:
    """The mirror's ASGI app."""

    async def write(request: Request) -> Response:
        try:
            body = await _body(request, mirror.max_body)
        except _TooLarge:
            return _reply(MirrorReply(413, b"request body too large\n"))
        except zlib.error:
            return _reply(MirrorReply(400, b"the gzip body does not decompress\n"))
        handle = (
            mirror.add_checkpoint if request.url.path == "/add-checkpoint" else mirror.add_entries
        )
        try:
            return _reply(await asyncio.to_thread(handle, body))
        except (OSError, sqlite3.Error) as exc:  # nothing was acknowledged: the client retries
            return _reply(MirrorReply(503, f"the mirror's storage failed: {exc}\n".encode()))

    async def checkpoint(request: Request) -> Response:
        if request.path_params["origin"] != mirror.origin_hash:
            return Response(b"unknown log\n", status_code=404)
        raw = await asyncio.to_thread(mirror.checkpoint)
        if raw is None:
            return Response(b"nothing mirrored yet\n", status_code=404)
        return Response(
            raw, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    async def tile(request: Request) -> Response:
        if request.path_params["origin"] != mirror.origin_hash:
            return Response(b"unknown log\n", status_code=404)
        try:
            tid, entries = parse_tile_path("tile/" + request.path_params["rest"])
        except MalformedError as exc:
            return Response(f"{exc}\n".encode(), status_code=400)
        data = await asyncio.to_thread(mirror.cache.get, tid, entries=entries)
        if data is None:
            return Response(b"not mirrored\n", status_code=404)
        cache_control = PARTIAL if tid.is_partial else IMMUTABLE
        return Response(
            data, media_type="application/octet-stream", headers={"Cache-Control": cache_control}
        )

    return Starlette(
        routes=[
            Route("/add-checkpoint", write, methods=["POST"]),
            Route("/add-entries", write, methods=["POST"]),
            Route("/{origin}/checkpoint", checkpoint, methods=["GET"]),
            Route("/{origin}/tile/{rest:path}", tile, methods=["GET"]),
        ]
    )
