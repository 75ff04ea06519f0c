"""Request and response plumbing shared by the v1 and v2 routes.

Error bodies follow the Rekor OpenAPI: v1 sends ``{"code": <HTTP status>, "message": …}``
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

from rekorkit import boundedjson
from rekorkit.errors import MalformedError

__all__ = [
    "BodyTooLarge",
    "api_error",
    "empty_404",
    "json_response",
    "load_json",
    "parse_index",
    "raw_error",
    "read_asgi_body",
    "read_body",
    "v1_error",
    "v2_error",
]

# the rekor-tiles API: rekor-tiles' default --max-request-body-size is 4 MiB.
DEFAULT_MAX_BODY = 4 * 1024 * 1024

# gRPC status codes used by rekor-tiles (sigstore/protobuf-specs TransparencyLogEntry table).
GRPC_INVALID_ARGUMENT = 3
GRPC_ALREADY_EXISTS = 6
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNKNOWN = 2
GRPC_DEADLINE_EXCEEDED = 4
GRPC_NOT_FOUND = 5
GRPC_UNIMPLEMENTED = 12
GRPC_UNAVAILABLE = 14

# grpc-gateway's mapping from gRPC codes to HTTP statuses, read backwards (sigstore/protobuf-specs
# TransparencyLogEntry).
_GRPC_FOR_STATUS = {
    400: GRPC_INVALID_ARGUMENT,
    404: GRPC_NOT_FOUND,
    405: GRPC_UNIMPLEMENTED,
    408: GRPC_DEADLINE_EXCEEDED,
    409: GRPC_ALREADY_EXISTS,
    413: GRPC_RESOURCE_EXHAUSTED,
    501: GRPC_UNIMPLEMENTED,
    503: GRPC_UNAVAILABLE,
}

# The Rekor OpenAPI types indexes as int64.
_INT64_MAX = 2**63 - 1

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


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
    """the Rekor OpenAPI, Error: ``{"code", "message"}``; ``code`` defaults to the status."""
    return json_response(
        {"code": status if code is None else code, "message": message}, status, headers
    )


def v2_error(
    status: int, grpc_code: int, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """sigstore/protobuf-specs TransparencyLogEntry: the gRPC-gateway error body."""
    return json_response({"code": grpc_code, "message": message, "details": []}, status, headers)


def api_error(
    path: str, status: int, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """The error body a Rekor server sends for ``path``: v2's gRPC-gateway form under
    ``/api/v2/``, v1's ``{"code", "message"}`` everywhere else."""
    if path.startswith("/api/v2/"):
        grpc = _GRPC_FOR_STATUS.get(status, GRPC_UNKNOWN)
        return v2_error(status, grpc, message, headers=headers)
    return v1_error(status, message, headers=headers)


def raw_error(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response carrying the v1 error body, that closes the connection.

    For the connection layer, which answers before (or instead of) the application:
    a request that timed out, headers over the limit, too many connections.
    """
    body = json.dumps({"code": status, "message": message}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def load_json(raw: bytes | str, what: str = "request body") -> Any:
    """Parse untrusted JSON, its nesting depth bounded before it is parsed.

    Raises:
        MalformedError: not UTF-8, not JSON, or nested deeper than
            :data:`rekorkit.boundedjson.MAX_DEPTH`.
    """
    return boundedjson.loads(raw, what=what)


def parse_index(raw: str, name: str) -> int:
    """A non-negative int64 written in ASCII decimal digits only (the Rekor OpenAPI
    ``int64`` type): no sign, spaces, underscores or non-ASCII digits, which ``int()``
    would all accept.

    Raises:
        MalformedError: anything else, the value named.
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _INT64_MAX:
        raise MalformedError(f'{name} in query must be of type int64: "{raw}"', where=name)
    return int(raw)


def empty_404() -> Response:
    """the Rekor OpenAPI, searchLogQuery: unknown index or UUID is a 404 with no body."""
    return Response(b"", status_code=404)
