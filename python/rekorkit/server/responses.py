"""Request and response plumbing shared by the v1 and v2 routes.

Error bodies follow REKOR_API.md: v1 sends ``{"code": <HTTP status>, "message": …}``
(§1.7), v2 sends the gRPC-gateway body ``{"code": <gRPC code>, "message": …,
"details": []}`` (§4.2). Bodies are read with a size limit so an oversized
request is refused before it is parsed.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

__all__ = [
    "BodyTooLarge",
    "empty_404",
    "json_response",
    "read_asgi_body",
    "read_body",
    "v1_error",
    "v2_error",
]

# REKOR_API.md §4.1: rekor-tiles' default --max-request-body-size is 4 MiB.
DEFAULT_MAX_BODY = 4 * 1024 * 1024

# gRPC status codes used by rekor-tiles (REKOR_API.md §4.2 table).
GRPC_INVALID_ARGUMENT = 3
GRPC_ALREADY_EXISTS = 6
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNKNOWN = 2


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""

    def __init__(self, limit: int):
        super().__init__(f"Request Entity Too Large. Limit set to {limit}")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes without reading it all."""
    return await read_asgi_body(request.scope, request.receive, limit)


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """:func:`read_body` for a raw ASGI request (routes served without the router).

    Raises:
        BodyTooLarge: the declared or received body is over ``limit``.
        ClientDisconnect: the client went away before the body was complete.
    """
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise BodyTooLarge(limit)
            break
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def v1_error(
    status: int, message: str, *, code: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """REKOR_API.md §1.7: ``{"code", "message"}``; ``code`` defaults to the status."""
    return json_response(
        {"code": status if code is None else code, "message": message}, status, headers
    )


def v2_error(
    status: int, grpc_code: int, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """REKOR_API.md §4.2: the gRPC-gateway error body."""
    return json_response({"code": grpc_code, "message": message, "details": []}, status, headers)


def empty_404() -> Response:
    """REKOR_API.md §1.6: unknown index or UUID is a 404 with no body."""
    return Response(b"", status_code=404)
