"""Validate entry requests before they are queued, a large batch on every core.

A request is checked the way the log will check it on write (the Rekor
OpenAPI, ProposedEntry for v1; the rekor-tiles API for v2): parsed, its
size limited, every signature verified against the key or certificate it
carries, and its canonical body built. Most of that is Python (JSON
canonicalization, RFC 8785) or holds the GIL (``cryptography``'s verify), so
threads do not overlap it: a large batch is split between the calling
process and a process pool instead. The pool is shared by every queue of the
process, started on first use from a ``forkserver`` (a fork of a clean server
process, so the caller's threads and open files are not inherited).

Errors stay precise and the batch all-or-nothing: a chunk stops at its first
bad request and reports its position; the caller re-checks that one request
in its own process, which raises the same typed error
(:class:`~rekorkit.errors.MalformedError` with ``where``,
:class:`~rekorkit.errors.SignatureError` with ``index`` and ``field``) as a
serial run would, for the first bad request of the batch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rekorkit.entries import canonicalize_v1, canonicalize_v2
from rekorkit.errors import MalformedError, SignatureError

__all__ = ["PARALLEL_MIN_BATCH", "Request", "Validated", "default_workers", "validate_requests"]

Request = Mapping[str, Any] | bytes | str
"""An entry request: a JSON object, or its JSON text."""

Validated = tuple[bytes, str, bytes]
"""``(canonical body, entry kind, request bytes)`` of one valid request."""

PARALLEL_MIN_BATCH = 512
"""Batches smaller than this are validated in the calling process (a chunk
sent to another process costs about as much as validating a hundred requests)."""

# Chunks per worker process: small enough to balance uneven requests,
# large enough that pickling stays a small share of the work.
_CHUNKS_PER_WORKER = 4

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _request_bytes(request: Request, max_size: int) -> tuple[Mapping[str, Any], bytes]:
    if isinstance(request, bytes | str):
        raw = request.encode() if isinstance(request, str) else request
        if len(raw) > max_size:
            raise MalformedError(
                f"request is {len(raw)} bytes, over the {max_size}-byte limit",
                what="request",
                where="body",
            )
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MalformedError(
                f"request is not JSON: {exc.msg} at byte {exc.pos}",
                what="request",
                where=f"byte {exc.pos}",
            ) from exc
        except (ValueError, RecursionError) as exc:
            raise MalformedError(f"request is not JSON: {exc}", what="request") from exc
        if not isinstance(obj, dict):
            raise MalformedError("request must be a JSON object", what="request", where="body")
        return obj, raw
    if not isinstance(request, Mapping):
        raise MalformedError(
            f"request must be a JSON object, got {type(request).__name__}", what="request"
        )
    raw = json.dumps(request, separators=(",", ":")).encode()
    if len(raw) > max_size:
        raise MalformedError(
            f"request is {len(raw)} bytes, over the {max_size}-byte limit",
            what="request",
            where="body",
        )
    return request, raw


def _validate(request: Request, api_version: int, max_size: int) -> Validated:
    obj, raw = _request_bytes(request, max_size)
    if api_version == 1:
        return canonicalize_v1(obj), str(obj.get("kind")), raw
    # Rekor v2 logs DSSE as a hashedrekord over the PAE digest (the rekor-tiles API).
    return canonicalize_v2(obj, check_signature=True), "hashedrekord", raw


def _validate_at(requests: Sequence[Request], i: int, api_version: int, max_size: int) -> Validated:
    """Validate request ``i``; its error names its position in the batch."""
    many = len(requests) > 1
    where = f"request {i}" if many else "request"
    try:
        return _validate(requests[i], api_version, max_size)
    except MalformedError as exc:
        field = f"[{i}].{exc.where}" if many else exc.where
        raise MalformedError(f"{where}: {exc}", what=exc.what, where=field) from exc
    except SignatureError as exc:
        raise SignatureError(f"{where}: {exc}", index=i, **exc.evidence) from exc


def _validate_chunk(
    requests: Sequence[Request], api_version: int, max_size: int
) -> tuple[list[Validated], int | None]:
    """In a pool process: the chunk's results up to its first bad request, and that one's offset."""
    out = []
    for offset, request in enumerate(requests):
        try:
            out.append(_validate(request, api_version, max_size))
        except (MalformedError, SignatureError):
            return out, offset
    return out, None


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if "forkserver" in methods:
                # Import the validators once in the server, not the caller's main module.
                ctx.set_forkserver_preload([__name__])
            _pool = ProcessPoolExecutor(workers, mp_context=ctx)
            _pool_workers = workers
        return _pool


def default_workers() -> int:
    """Processes a large batch is validated with: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def validate_requests(
    requests: Sequence[Request],
    *,
    api_version: int,
    max_size: int,
    workers: int | None = None,
) -> list[Validated]:
    """Validate every request; return each one's canonical body, kind and bytes, in order.

    Args:
        requests: the batch.
        api_version: the log API the requests are for (1 or 2).
        max_size: the largest request body accepted, in bytes.
        workers: pool processes for a batch of at least :data:`PARALLEL_MIN_BATCH`,
            beside the calling one (default: one per usable CPU; 1: validate in this
            process alone).

    Raises:
        MalformedError: the first malformed request (``where`` names its position and field).
        SignatureError: the first request whose signature does not verify
            (evidence: ``index``, ``field``).
    """
    n = workers if workers is not None else default_workers()
    if n <= 1 or len(requests) < PARALLEL_MIN_BATCH:
        return [_validate_at(requests, i, api_version, max_size) for i in range(len(requests))]
    # The caller validates the first share itself while n pool processes take the
    # rest: it would otherwise wait idle, and its share is not pickled.
    own = len(requests) // (n + 1)
    size = -(-(len(requests) - own) // (n * _CHUNKS_PER_WORKER))
    starts = range(own, len(requests), size)
    pool = _shared_pool(n)
    chunks = [requests[s : s + size] for s in starts]
    futures = [pool.submit(_validate_chunk, c, api_version, max_size) for c in chunks]
    try:
        out = [_validate_at(requests, i, api_version, max_size) for i in range(own)]
        # Then chunks no pool process has started yet (busy, or not scheduled on a
        # loaded machine), taken from the end while the pool takes from the front.
        results: list[tuple[list[Validated], int | None] | None] = [None] * len(chunks)
        for k in reversed(range(len(chunks))):
            if futures[k].cancel():
                results[k] = _validate_chunk(chunks[k], api_version, max_size)
        for start, result, future in zip(starts, results, futures, strict=True):
            done, bad = result if result is not None else future.result()
            out.extend(done)
            if bad is not None:
                # Raised here, by the same code as a serial run, for the first bad request.
                _validate_at(requests, start + bad, api_version, max_size)
                raise RuntimeError(f"request {start + bad} failed in the pool but validates here")
    finally:
        for future in futures:
            future.cancel()  # after an error: chunks not started yet are not needed
    return out
