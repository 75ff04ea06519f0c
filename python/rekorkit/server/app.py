"""The ASGI application: routes, the log service behind them, faults and forks.

:func:`create_app` wires a :class:`LogService` (the log, its integrator and
the server options) into a Starlette app. Static tile reads skip the router
(they are the bulk of a follower's traffic); trailing slashes are accepted
everywhere, as Rekor does for ``/entries/retrieve/`` (REKOR_API.md §6).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rekorkit.errors import MalformedError
from rekorkit.server import v1, v2
from rekorkit.server.faults import FaultController, FaultMiddleware, FaultRule, is_loopback
from rekorkit.server.fork import ForkView, build_fork
from rekorkit.server.integrator import Integrator
from rekorkit.server.log import TransparencyLog
from rekorkit.server.responses import DEFAULT_MAX_BODY, json_response
from rekorkit.server.storage import TileStore
from rekorkit.server.v1_reads import V1EntryReader

__all__ = ["LogService", "ServerOptions", "create_app", "open_service"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the server behaves.

    Attributes:
        read_only: refuse v2 writes with 405 (a frozen shard) and v1 writes with 501.
        faults: enable fault injection and the ``/_rekorkit/`` admin endpoints
            (only allowed when serving on loopback).
        max_body: request body limit in bytes (413 above it).
        max_batch: most entries per integration batch.
        batch_wait: seconds to collect a batch after its first entry.
        integration_delay: extra seconds before each batch (client-timeout tests).
        fault_seed: seed for fractional faults (reproducible runs).
    """

    read_only: bool = False
    faults: bool = False
    max_body: int = DEFAULT_MAX_BODY
    max_batch: int = 1024
    batch_wait: float = 0.004
    integration_delay: float = 0.0
    fault_seed: int | None = None


class LogService:
    """Everything a request handler needs: the log, its integrator, options, faults, fork.

    Args:
        log: the log to serve.
        options: server behaviour.
    """

    def __init__(self, log: TransparencyLog, options: ServerOptions | None = None):
        self.log = log
        self.options = options or ServerOptions()
        self.integrator = Integrator(
            log,
            max_batch=self.options.max_batch,
            max_wait=self.options.batch_wait,
            delay=self.options.integration_delay,
        )
        self.faults = FaultController(self.options.fault_seed)
        self.fork: ForkView | None = None
        self.v1_reads = V1EntryReader(log)
        self.log_id_b64 = base64.b64encode(log.identity.v2_log_id).decode()

    @property
    def read_only(self) -> bool:
        """Whether writes are refused."""
        return self.options.read_only

    @property
    def max_body(self) -> int:
        """The request body limit in bytes."""
        return self.options.max_body

    def start(self) -> None:
        """Start integrating submissions."""
        self.integrator.start()

    def close(self) -> None:
        """Stop the integrator (finishing queued work) and close the log."""
        self.integrator.stop()
        self.log.close()

    # -- entry canonicalization (rekorkit.entries.canonical does the checks) -----------
    @staticmethod
    def canonicalize_v1(proposed: Any) -> bytes:
        """The canonical v1 body for a proposed entry (signatures checked)."""
        from rekorkit.entries.canonical import canonicalize_v1

        return canonicalize_v1(proposed)

    @staticmethod
    def canonicalize_v2(request: Any) -> bytes:
        """The canonical v2 leaf for a ``CreateEntryRequest`` (strict)."""
        from rekorkit.entries.canonical import canonicalize_v2

        return canonicalize_v2(request)

    # -- views -----------------------------------------------------------------
    def view_for(self, scope: Scope) -> TransparencyLog | ForkView:
        """The tree this request sees: the fork when fork mode covers it, else the log."""
        fork = self.fork
        if fork is not None and fork.applies_to(_headers(scope)):
            return fork
        return self.log

    def store_for(self, scope: Scope) -> TileStore:
        """The tile directory this request reads."""
        return self.view_for(scope).store

    @staticmethod
    def tile_file(path: str) -> str | None:
        """The relative file for a request path under ``tile/``, or None if malformed."""
        from rekorkit.tiles import parse_tile_path

        try:
            parse_tile_path(path)
        except (MalformedError, ValueError):
            return None
        return path


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness plus the published size."""
    service: LogService = request.app.state.service
    return json_response({"status": "ok", "size": service.log.state.size})


async def admin_faults(request: Request) -> Response:
    """``/_rekorkit/faults``: list (GET), add (POST) or clear (DELETE) fault rules."""
    service: LogService = request.app.state.service
    if request.method == "DELETE":
        service.faults.clear()
        service.fork = None
        return json_response(service.faults.snapshot())
    if request.method == "POST":
        try:
            body = json.loads(await request.body() or b"{}")
            rules = [FaultRule.from_json(r) for r in body.get("rules", [])]
            service.faults.set_rules(
                rules, replace=bool(body.get("replace")), seed=body.get("seed")
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return json_response({"code": 400, "message": str(exc)}, 400)
    return json_response(service.faults.snapshot())


async def admin_fork(request: Request) -> Response:
    """``/_rekorkit/fork``: start (POST ``{"at", "extra", "readers"}``), show or stop it."""
    service: LogService = request.app.state.service
    if request.method == "DELETE":
        service.fork = None
    elif request.method == "POST":
        try:
            body = json.loads(await request.body() or b"{}")
            at = int(body.get("at", service.log.state.size))
            extra = int(body.get("extra", 1))
            readers = str(body.get("readers", "all"))
            service.fork = build_fork(service.log, at=at, extra=extra, readers=readers)
        except (ValueError, TypeError, AttributeError) as exc:
            return json_response({"code": 400, "message": str(exc)}, 400)
    fork = service.fork
    if fork is None:
        return json_response({"active": False})
    return json_response(
        {
            "active": True,
            "at": fork.at,
            "readers": fork.readers,
            "size": fork.state.size,
            "checkpoint": fork.state.checkpoint.decode(),
        }
    )


class _Dispatcher:
    """Front door: loopback-only admin, trailing slashes, fast static reads and v1 searches
    (the bulk of a follower's and a v1 auditor's traffic), then routes."""

    def __init__(self, service: LogService, router: ASGIApp):
        self.service = service
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
                scope = dict(scope, path=path)
            if scope["method"] in ("GET", "HEAD") and (
                path == "/checkpoint" or path.startswith("/tile/")
            ):
                await v2.serve_static(self.service, path[1:], scope, receive, send)
                return
            if scope["method"] == "POST" and path == "/api/v1/log/entries/retrieve":
                await v1.serve_search(self.service, scope, receive, send)
                return
            if path.startswith("/_rekorkit/"):
                client = scope.get("client")
                if not self.service.options.faults or not is_loopback(
                    client[0] if client else None
                ):
                    await Response(b"", status_code=404)(scope, receive, send)
                    return
        await self.router(scope, receive, send)


def create_app(service: LogService) -> ASGIApp:
    """The ASGI app serving ``service``: v1 + v2 APIs, tiles, health, faults.

    The integrator starts with the app (ASGI lifespan) and stops with it.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        yield

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/v2/log/entries", v2.create_entry_v2, methods=["POST"]),
        *v1.routes(),
    ]
    if service.options.faults:
        admin_methods = ["GET", "POST", "DELETE"]
        routes.append(Route("/_rekorkit/faults", admin_faults, methods=admin_methods))
        routes.append(Route("/_rekorkit/fork", admin_fork, methods=admin_methods))
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.state.service = service
    starlette.router.redirect_slashes = False
    app: ASGIApp = _Dispatcher(service, starlette)
    if service.options.faults:
        app = FaultMiddleware(app, service.faults)
    return _WithLifespan(app, starlette)


class _WithLifespan:
    """Route lifespan events to Starlette (the wrappers only handle HTTP)."""

    def __init__(self, app: ASGIApp, starlette: Starlette):
        self.app = app
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.starlette(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def open_service(
    data_dir: Path | str,
    *,
    host: str | None = None,
    options: ServerOptions | None = None,
    fsync: bool = True,
) -> LogService:
    """Open (or create) the log in ``data_dir`` and wrap it in a service."""
    return LogService(TransparencyLog(data_dir, host=host, fsync=fsync), options)
