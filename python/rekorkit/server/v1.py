"""Rekor v1 REST routes (the Rekor OpenAPI), served from the tile log.

Status codes and bodies follow §1.7: 201 with ``ETag``/``Location``, 409 with
``Location`` for duplicates, 404 with an empty body for unknown entries, 422
for parameters that fail Rekor's swagger validation (with go-openapi's 6xx
codes), 400 for entries that fail the type checks. Every LogEntry carries an
inclusion proof, the v1 checkpoint it verifies against and a signed entry
timestamp (§2.5).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache, cached
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rekorkit.errors import MalformedError
from rekorkit.merkle import hash_leaves, leaf_hash
from rekorkit.server.responses import (
    BodyTooLarge,
    empty_404,
    json_response,
    load_json,
    parse_index,
    read_asgi_body,
    read_body,
    v1_error,
)
from rekorkit.server.service import LogService

if TYPE_CHECKING:
    from rekorkit.server.log import LogState

__all__ = ["log_entries_json", "log_entry", "routes", "serve_search"]

# the Rekor OpenAPI, searchLogQuery: entry IDs are 64-hex UUIDs or 80-hex (treeID + UUID).
_UUID = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{80}")
UUID_PATTERN = "^([0-9a-fA-F]{64}|[0-9a-fA-F]{80})$"
# the Rekor OpenAPI, searchLogQuery: maxSearchQueries.
MAX_SEARCH = 10
# go-openapi validation codes (the Rekor OpenAPI, Error: codes >= 600 map to HTTP 422).
INVALID_TYPE, REQUIRED, PATTERN, MINIMUM, MAX_ITEMS = 601, 602, 605, 609, 611
FROZEN = "This log has been frozen, please switch to the latest log."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def log_entry(
    service: LogService,
    index: int,
    leaf: bytes,
    integrated_time: int,
    proof: list[bytes] | tuple[bytes, ...],
    size: int,
    root: bytes,
    checkpoint: bytes,
) -> tuple[str, dict[str, Any]]:
    """The ``(entryID, LogEntry)`` pair of the Rekor OpenAPI, LogEntry (its SET signed once, then
    kept)."""
    ident = service.log.identity
    entry_id = ident.tree_id_hex + leaf_hash(leaf).hex()
    body = _b64(leaf)
    # the Rekor OpenAPI, InclusionPromise: the SET signs JCS {body, integratedTime, logID,
    # logIndex}.
    set_b64 = service.v1_reads.set_for(index, body, integrated_time)
    return entry_id, {
        entry_id: {
            "body": body,
            "integratedTime": integrated_time,
            "logID": ident.v1_log_id.hex(),
            "logIndex": index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": checkpoint.decode(),
                    "hashes": [h.hex() for h in proof],
                    "logIndex": index,
                    "rootHash": root.hex(),
                    "treeSize": size,
                },
                "signedEntryTimestamp": set_b64,
            },
        }
    }


@cached(LRUCache(maxsize=64), lock=threading.Lock())
def _state_parts(state: LogState) -> tuple[str, str]:
    """(root hex, v1 checkpoint as a JSON string), computed once per published tree head."""
    return state.root.hex(), json.dumps(state.v1_checkpoint.decode())


def log_entries_json(service: LogService, indices: list[int], state: LogState) -> list[str]:
    """The LogEntry objects of published ``indices`` as JSON texts, proofs to ``state``.

    The hot path of every v1 read: the records and proofs come in one batch
    (:class:`~rekorkit.server.v1_reads.V1EntryReader`) and the text is
    formatted directly. Every value is
    hex, base64, decimal or a JSON-escaped string, so formatting is exact; a
    test checks it against :func:`log_entry`.
    """
    if not indices:
        return []
    recs = service.v1_reads.read(indices, state.size)
    leaf_hex = hash_leaves(recs.leaves).tobytes().hex()
    root, checkpoint = _state_parts(state)
    ident = service.log.identity
    tree = ident.tree_id_hex
    log_id = ident.v1_log_id.hex()
    size = state.size
    out = []
    for k, index in enumerate(indices):
        hx = recs.proofs[k]
        proof = '","'.join([hx[j : j + 64] for j in range(0, len(hx), 64)])
        proof = f'"{proof}"' if proof else ""
        uuid = leaf_hex[64 * k : 64 * k + 64]
        out.append(
            f'{{"{tree}{uuid}":{{"body":"{recs.bodies[k]}","integratedTime":{recs.times[k]},'
            f'"logID":"{log_id}","logIndex":{index},"verification":{{"inclusionProof":'
            f'{{"checkpoint":{checkpoint},"hashes":[{proof}],"logIndex":{index},'
            f'"rootHash":"{root}","treeSize":{size}}},'
            f'"signedEntryTimestamp":"{recs.sets[k]}"}}}}}}'
        )
    return out


def _lookup(service: LogService, indices: list[int]) -> list[str]:
    """LogEntry JSON texts for existing ``indices`` in the published tree (blocking)."""
    state = service.log.state
    return log_entries_json(service, [i for i in indices if 0 <= i < state.size], state)


def _kept(service: LogService, indices: list[int]) -> bool:
    """Whether a lookup of ``indices`` does no blocking work (see ``V1EntryReader.kept``)."""
    return service.v1_reads.kept(indices, service.log.state.size)


def _json_array(items: list[str]) -> Response:
    body = ("[" + ",".join(items) + "]").encode()
    return Response(body, media_type="application/json")


def _json_one(item: str) -> Response:
    return Response(item.encode(), media_type="application/json")


def _find_uuids(service: LogService, uuids: list[str]) -> list[int]:
    """Indices of the entries with these 64/80-hex IDs (blocking)."""
    ident = service.log.identity
    hashes = []
    for u in uuids:
        if len(u) == 80 and int(u[:16], 16) not in (0, ident.tree_id):
            continue  # another tree: not in this log
        hashes.append(bytes.fromhex(u[-64:]))
    if not hashes:
        return []
    found = service.log.find(np.frombuffer(b"".join(hashes), np.uint8).reshape(-1, 32))
    return [i for i in found if i is not None]


def _tree_id_error(u: str) -> Response | None:
    # the Rekor OpenAPI, entry UUID: the 16-hex tree ID must parse as an int64.
    if len(u) == 80 and int(u[:16], 16) >= 2**63:
        return v1_error(400, f"validation error: tree ID {u[:16]} is not a valid int64")
    return None


def _too_large(exc: BodyTooLarge) -> Response:
    # The rest of the body is not read: close the connection rather than drain it.
    return v1_error(413, str(exc), headers={"connection": "close"})


def _pattern_error(u: str) -> Response:
    return v1_error(422, f"entryUUID in path should match '{UUID_PATTERN}'", code=PATTERN)


async def get_entry_by_index(request: Request) -> Response:
    """``GET /api/v1/log/entries?logIndex=N``."""
    raw = request.query_params.get("logIndex")
    if raw is None:
        return v1_error(422, "logIndex in query is required", code=REQUIRED)
    if raw.startswith("-") and raw[1:].isascii() and raw[1:].isdigit():
        return v1_error(422, "logIndex in query should be greater than or equal to 0", code=MINIMUM)
    try:
        index = parse_index(raw, "logIndex")
    except MalformedError as exc:
        return v1_error(422, str(exc), code=INVALID_TYPE)
    service = request.app.state.service
    if _kept(service, [index]):
        entries = _lookup(service, [index])
    else:
        entries = await run_in_threadpool(_lookup, service, [index])
    return _json_one(entries[0]) if entries else empty_404()


async def get_entry_by_uuid(request: Request) -> Response:
    """``GET /api/v1/log/entries/{entryUUID}`` (64 or 80 hex)."""
    uuid = request.path_params["uuid"]
    if not _UUID.fullmatch(uuid):
        return _pattern_error(uuid)
    err = _tree_id_error(uuid)
    if err is not None:
        return err
    service = request.app.state.service

    def work() -> list[str]:
        return _lookup(service, _find_uuids(service, [uuid]))

    entries = await run_in_threadpool(work)
    return _json_one(entries[0]) if entries else empty_404()


async def create_entry(request: Request) -> Response:
    """``POST /api/v1/log/entries`` (hashedrekord 0.0.1, dsse 0.0.1, intoto 0.0.2)."""
    service: LogService = request.app.state.service
    if service.read_only:
        return v1_error(405, FROZEN)
    try:
        raw = await read_body(request, service.max_body)
    except BodyTooLarge as exc:
        return _too_large(exc)
    try:
        proposed = load_json(raw)
    except MalformedError as exc:
        return v1_error(400, f'parsing body body from "" failed, because {exc}')
    # Whatever goes wrong while checking client input is the client's 400, never a 500.
    try:
        leaf = service.canonicalize_v1(proposed)
    except Exception as exc:
        return v1_error(400, f"error processing entry: {exc}")
    try:
        receipt = await service.integrator.submit(leaf)
    except ValueError as exc:
        return v1_error(400, f"error processing entry: {exc}")
    except Exception:
        return v1_error(500, "unexpected result from transparency log")
    entry_id = service.log.identity.tree_id_hex + leaf_hash(leaf).hex()
    location = f"/api/v1/log/entries/{entry_id}"
    if receipt.duplicate:
        return v1_error(
            409,
            f"an equivalent entry already exists in the transparency log with UUID {entry_id}",
            headers={"location": location},
        )
    st = receipt.state
    _, entry = log_entry(
        service,
        receipt.index,
        leaf,
        receipt.integrated_time,
        receipt.proof,
        st.size,
        st.root,
        st.v1_checkpoint,
    )
    return json_response(entry, 201, headers={"etag": entry_id, "location": location})


async def search_entries(request: Request) -> Response:
    """``POST /api/v1/log/entries/retrieve``: at most 10 UUIDs, indexes and entries in all."""
    service: LogService = request.app.state.service
    try:
        raw = await read_body(request, service.max_body)
    except BodyTooLarge as exc:
        return _too_large(exc)
    return await _search(service, raw)


async def serve_search(service: LogService, scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`search_entries` for the front door: a range read's only request, so it skips
    the router and its middleware (about a third of the time of a 10-entry search)."""
    try:
        raw = await read_asgi_body(scope, receive, service.max_body)
    except BodyTooLarge as exc:
        response = _too_large(exc)
    except ClientDisconnect:
        return
    else:
        response = await _search(service, raw)
    await response(scope, receive, send)


async def _search(service: LogService, raw: bytes) -> Response:
    try:
        query = load_json(raw)
    except MalformedError as exc:
        return v1_error(400, f'parsing body entry from "" failed, because {exc}')
    if not isinstance(query, dict):
        return v1_error(400, "parsing body entry failed: expected a JSON object")
    lists: dict[str, list[Any]] = {}
    for key in ("entryUUIDs", "logIndexes", "entries"):
        value = query.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            return v1_error(422, f"{key} in body must be of type array", code=INVALID_TYPE)
        if len(value) > MAX_SEARCH:
            return v1_error(
                422, f"{key} in body should have at most {MAX_SEARCH} items", code=MAX_ITEMS
            )
        lists[key] = value
    if sum(len(v) for v in lists.values()) > MAX_SEARCH:
        return v1_error(422, f"more than max allowed {MAX_SEARCH} entries in request")
    uuids = lists.get("entryUUIDs", [])
    for u in uuids:
        if not isinstance(u, str) or not _UUID.fullmatch(u):
            return v1_error(422, f"entryUUIDs in body should match '{UUID_PATTERN}'", code=PATTERN)
        err = _tree_id_error(u)
        if err is not None:
            return err
    indexes = lists.get("logIndexes", [])
    for i in indexes:
        if not isinstance(i, int) or isinstance(i, bool):
            return v1_error(422, "logIndexes in body must be of type int64", code=INVALID_TYPE)
        if i < 0:
            return v1_error(
                422, "logIndexes in body should be greater than or equal to 0", code=MINIMUM
            )
    leaf_ids = []
    for n, proposed in enumerate(lists.get("entries", [])):
        try:
            leaf_ids.append(
                service.log.identity.tree_id_hex
                + leaf_hash(service.canonicalize_v1(proposed)).hex()
            )
        except Exception as exc:
            return v1_error(400, f"error processing entry {n}: {exc}")

    def work() -> list[str]:
        found = _find_uuids(service, uuids + leaf_ids) + list(indexes)
        return _lookup(service, found)

    if not uuids and not leaf_ids and _kept(service, indexes):
        return _json_array(_lookup(service, indexes))  # nothing blocks: skip the thread hop
    return _json_array(await run_in_threadpool(work))


async def log_info(request: Request) -> Response:
    """``GET /api/v1/log``: the active tree head (the Rekor OpenAPI, getLogInfo)."""
    service: LogService = request.app.state.service
    state = service.view_for(request.scope).state
    return json_response(
        {
            "rootHash": state.root.hex(),
            "treeSize": state.size,
            "signedTreeHead": state.v1_checkpoint.decode(),
            "treeID": str(service.log.identity.tree_id),
            "inactiveShards": None,
        }
    )


def _tree_id_ok(service: LogService, request: Request) -> bool:
    tree = request.query_params.get("treeID")
    return tree is None or tree == str(service.log.identity.tree_id)


async def public_key(request: Request) -> Response:
    """``GET /api/v1/log/publicKey``: the v1 key as PEM."""
    service: LogService = request.app.state.service
    if not _tree_id_ok(service, request):
        return v1_error(400, f"treeID {request.query_params.get('treeID')} is not a known shard")
    return Response(service.log.identity.ecdsa_public_pem, media_type="application/x-pem-file")


def _int_param(request: Request, name: str, default: int | None) -> int | Response:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            return v1_error(422, f"{name} in query is required", code=REQUIRED)
        return default
    if raw.startswith("-") and raw[1:].isascii() and raw[1:].isdigit():
        value = -1
    else:
        try:
            value = parse_index(raw, name)
        except MalformedError as exc:
            return v1_error(422, str(exc), code=INVALID_TYPE)
    if value < 1:
        return v1_error(422, f"{name} in query should be greater than or equal to 1", code=MINIMUM)
    return value


async def consistency_proof(request: Request) -> Response:
    """``GET /api/v1/log/proof?firstSize=&lastSize=`` (the Rekor OpenAPI, getLogProof)."""
    service: LogService = request.app.state.service
    first = _int_param(request, "firstSize", 1)
    if isinstance(first, Response):
        return first
    last = _int_param(request, "lastSize", None)
    if isinstance(last, Response):
        return last
    if not _tree_id_ok(service, request):
        return v1_error(400, f"treeID {request.query_params.get('treeID')} is not a known shard")
    if first > last:
        return v1_error(400, f"firstSize({first}) must be less than lastSize({last})")
    view = service.view_for(request.scope)
    size = view.state.size
    if last > size:
        return v1_error(
            400,
            f"the tree size requested({last}) was greater than what is currently "
            f"observable({size})",
        )

    def work() -> dict[str, Any]:
        from rekorkit.tiles import root_from_tiles

        builder = view.proof_builder(last)
        hashes = builder.consistency_proof(first) if first < last else []
        root = view.state.root if last == size else root_from_tiles(last, view.read_tile)
        return {"rootHash": root.hex(), "hashes": [h.hex() for h in hashes]}

    return json_response(await run_in_threadpool(work))


def routes() -> list[Route]:
    """The v1 routes."""
    return [
        Route("/api/v1/log", log_info, methods=["GET"]),
        Route("/api/v1/log/publicKey", public_key, methods=["GET"]),
        Route("/api/v1/log/proof", consistency_proof, methods=["GET"]),
        Route("/api/v1/log/entries", get_entry_by_index, methods=["GET"]),
        Route("/api/v1/log/entries", create_entry, methods=["POST"]),
        Route("/api/v1/log/entries/retrieve", search_entries, methods=["POST"]),
        Route("/api/v1/log/entries/{uuid}", get_entry_by_uuid, methods=["GET"]),
    ]
