"""Request and response plumbing shared by the v1 and v2 routes.

Error bodies follow REKOR_API.md: v1 sends ``{"code": <HTTP status>, "message": …}``
(§1.7), v2 sends the gRPC-gateway body ``{"code": <gRPC code>, "message": …,
"details": []}`` (§4.2). Bodies are read with a size limit so an oversized
request is refused before it is parsed.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "BodyTooLarge",
    "empty_404",
    "json_response",
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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
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
