"""Rekor v2 routes: ``POST /api/v2/log/entries`` and the static tlog-tiles reads.

Writes follow rekor-tiles (the rekor-tiles API-4.2): strict ``hashedRekordRequestV002``
parsing, 201 with a protobuf-JSON ``TransparencyLogEntry`` once a checkpoint that
includes the entry is published, 409 with ``x-log-index`` for a duplicate, 405
on a frozen (read-only) log. Reads are the C2SP tlog-tiles files (c2sp.org/tlog-tiles),
served straight from the data directory.
"""

from __future__ import annotations

import base64
import json
import threading

from cachetools import LRUCache, cached
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from rekorkit.errors import MalformedError
from rekorkit.server.integrator import Receipt
from rekorkit.server.log import LogState
from rekorkit.server.responses import (
    GRPC_ALREADY_EXISTS,
    GRPC_INVALID_ARGUMENT,
    GRPC_RESOURCE_EXHAUSTED,
    GRPC_UNKNOWN,
    BodyTooLarge,
    api_error,
    load_json,
    read_body,
    v2_error,
)
from rekorkit.server.service import LogService

__all__ = [
    "create_entry_v2",
    "serve_static",
    "transparency_log_entry",
    "transparency_log_entry_json",
]

# sigstore/protobuf-specs TransparencyLogEntry table: the body a frozen shard sends with its 405.
FROZEN_MESSAGE = "This log has been frozen, please switch to the latest log."

# c2sp.org/tlog-tiles: tiles are immutable; the checkpoint may be cached a few seconds at most.
TILE_HEADERS = {"cache-control": "public, max-age=31536000, immutable"}
CHECKPOINT_HEADERS = {"cache-control": "no-cache"}
CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def transparency_log_entry(service: LogService, leaf: bytes, receipt: Receipt) -> dict[str, object]:
    """sigstore/protobuf-specs TransparencyLogEntry: the protobuf-JSON ``TransparencyLogEntry`` for
    a new entry."""
    state = receipt.state
    return {
        "logIndex": str(receipt.index),
        "logId": {"keyId": _b64(service.log.identity.v2_log_id)},
        "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
        "integratedTime": "0",
        "inclusionPromise": None,
        "inclusionProof": {
            "logIndex": str(receipt.index),
            "rootHash": _b64(state.root),
            "treeSize": str(state.size),
            "hashes": [_b64(h) for h in receipt.proof],
            "checkpoint": {"envelope": state.checkpoint.decode()},
        },
        "canonicalizedBody": _b64(leaf),
    }


@cached(LRUCache(maxsize=64), lock=threading.Lock())
def _state_parts(state: LogState) -> tuple[str, str]:
    """(root b64, checkpoint as a JSON string), computed once per published tree head."""
    return _b64(state.root), json.dumps(state.checkpoint.decode())


def transparency_log_entry_json(service: LogService, leaf: bytes, receipt: Receipt) -> bytes:
    """:func:`transparency_log_entry` serialized directly (the hot path of every write).

    Every value is base64, decimal or a JSON-escaped string, so formatting the
    text is exact; a test checks it against ``json.dumps`` of the dict form.
    """
    root, checkpoint = _state_parts(receipt.state)
    index = receipt.index
    hashes = ",".join(f'"{_b64(h)}"' for h in receipt.proof)
    key_id = service.log_id_b64
    return (
        f'{{"logIndex":"{index}","logId":{{"keyId":"{key_id}"}},'
        '"kindVersion":{"kind":"hashedrekord","version":"0.0.2"},'
        '"integratedTime":"0","inclusionPromise":null,'
        f'"inclusionProof":{{"logIndex":"{index}","rootHash":"{root}",'
        f'"treeSize":"{receipt.state.size}","hashes":[{hashes}],'
        f'"checkpoint":{{"envelope":{checkpoint}}}}},'
        f'"canonicalizedBody":"{_b64(leaf)}"}}'
    ).encode()


async def create_entry_v2(request: Request) -> Response:
    """``POST /api/v2/log/entries``."""
    service: LogService = request.app.state.service
    if service.read_only:
        return PlainTextResponse(FROZEN_MESSAGE, status_code=405)
    try:
        raw = await read_body(request, service.max_body)
    except BodyTooLarge as exc:
        # The rest of the body is not read: close the connection rather than drain it.
        return v2_error(413, GRPC_RESOURCE_EXHAUSTED, str(exc), headers={"connection": "close"})
    try:
        obj = load_json(raw)
    except MalformedError as exc:
        return v2_error(400, GRPC_INVALID_ARGUMENT, f"proto: syntax error: {exc}")
    # Whatever goes wrong while checking client input is the client's 400, never a 500.
    try:
        leaf = service.canonicalize_v2(obj)
    except Exception as exc:
        return v2_error(400, GRPC_INVALID_ARGUMENT, f"invalid hashedrekord request: {exc}")
    try:
        receipt = await service.integrator.submit(leaf)
    except ValueError as exc:
        return v2_error(400, GRPC_INVALID_ARGUMENT, f"invalid hashedrekord request: {exc}")
    except Exception:
        return v2_error(500, GRPC_UNKNOWN, "failed to integrate entry")
    if receipt.duplicate:
        return v2_error(
            409,
            GRPC_ALREADY_EXISTS,
            "an equivalent entry already exists in the transparency log with index "
            f"{receipt.index}",
            headers={"x-log-index": str(receipt.index)},
        )
    body = transparency_log_entry_json(service, leaf, receipt)
    return Response(body, status_code=201, media_type="application/json")


async def serve_static(
    service: LogService, path: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve ``/checkpoint``, ``/tile/…`` and ``/tile/entries/…`` (c2sp.org/tlog-tiles).

    ``path`` is the request path without the leading slash. Anything that is
    not a well-formed tile path (c2sp.org/tlog-tiles) is a 404, as from a bucket.
    """
    store = service.store_for(scope)
    response: Response
    if path == "checkpoint":
        data = store.read_checkpoint()
        if data is None:
            response = api_error("/" + path, 404, "checkpoint not found: the log is empty")
        else:
            response = Response(data, media_type=CHECKPOINT_TYPE, headers=CHECKPOINT_HEADERS)
    else:
        rel = service.tile_file(path)
        data = store.read(rel) if rel is not None else None
        if data is None:
            response = api_error("/" + path, 404, f"{path[:256]} not found")
        else:
            response = Response(data, media_type=TILE_TYPE, headers=TILE_HEADERS)
    await response(scope, receive, send)
