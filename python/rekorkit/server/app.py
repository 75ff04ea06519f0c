"""The ASGI application: routes, the log service behind them, faults and forks.

:func:`create_app` wires a :class:`LogService` (the log, its integrator and
the server options) into a Starlette app. Static tile reads skip the router
(they are the bulk of a follower's traffic); trailing slashes are accepted
everywhere, as Rekor does for ``/entries/retrieve/`` (Rekor's issue tracker).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rekorkit.errors import MalformedError
from rekorkit.server import v1, v2
from rekorkit.server.faults import FaultMiddleware, FaultRequest, is_loopback
from rekorkit.server.fork import build_fork
from rekorkit.server.responses import BodyTooLarge, api_error, json_response, load_json, read_body
from rekorkit.server.service import LogService, ServerOptions, open_service

__all__ = ["LogService", "ServerOptions", "create_app", "open_service"]

_log = logging.getLogger(__name__)

# The admin endpoints take small JSON bodies.
_ADMIN_MAX_BODY = 64 * 1024


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness plus the published size."""
    service: LogService = request.app.state.service
    return json_response({"status": "ok", "size": service.log.state.size})


async def admin_faults(request: Request) -> Response:
    """``/_rekorkit/faults``: list (GET), add (POST) or clear (DELETE) fault rules.

    A POST body is checked whole (:class:`FaultRequest`) before any rule changes.
    """
    service: LogService = request.app.state.service
    if request.method == "DELETE":
        service.faults.clear()
        service.fork = None
        return json_response(service.faults.snapshot())
    if request.method == "POST":
        try:
            body = await read_body(request, _ADMIN_MAX_BODY)
            req = FaultRequest.from_json(load_json(body) if body.strip() else {})
        except BodyTooLarge as exc:
            return api_error(request.url.path, 413, str(exc))
        except MalformedError as exc:
            return api_error(request.url.path, 400, str(exc))
        service.faults.set_rules(req.rules, replace=req.replace, seed=req.seed)
    return json_response(service.faults.snapshot())


async def admin_fork(request: Request) -> Response:
    """``/_rekorkit/fork``: start (POST ``{"at", "extra", "readers"}``), show or stop it."""
    service: LogService = request.app.state.service
    if request.method == "DELETE":
        service.fork = None
    elif request.method == "POST":
        try:
            raw = await read_body(request, _ADMIN_MAX_BODY)
            body = load_json(raw) if raw.strip() else {}
            at, extra, readers = _fork_request(body, service.log.state.size)
            service.fork = build_fork(service.log, at=at, extra=extra, readers=readers)
        except BodyTooLarge as exc:
            return api_error(request.url.path, 413, str(exc))
        except (MalformedError, ValueError) as exc:
            return api_error(request.url.path, 400, str(exc))
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


def _fork_request(body: object, size: int) -> tuple[int, int, str]:
    """``(at, extra, readers)`` from a fork request, types checked (ranges: build_fork)."""
    if not isinstance(body, dict):
        raise MalformedError("the body must be a JSON object", where="body")
    extra_fields = set(body) - {"at", "extra", "readers"}
    if extra_fields:
        raise MalformedError(f"unknown fields {sorted(extra_fields)}", where="body")
    at, extra, readers = body.get("at", size), body.get("extra", 1), body.get("readers", "all")
    for name, value in (("at", at), ("extra", extra)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise MalformedError(f"{name}: must be an integer", where=name)
    if not isinstance(readers, str):
        raise MalformedError("readers: must be a string", where="readers")
    return at, extra, readers


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no route, wrong method) as Rekor error bodies."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed, but [{allowed}] are"
    elif exc.status_code == 404:
        message = f"path {path[:256]} was not found"
    else:
        message = exc.detail
    return api_error(path, exc.status_code, message, headers=dict(exc.headers or {}))


async def _disconnected(request: Request, exc: Exception) -> Response:
    # the Rekor OpenAPI, Error: nginx's 499; nobody is left to read it.
    return api_error(request.url.path, 499, "client disconnected during request")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return api_error(request.url.path, 500, "internal server error")


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
                    response = api_error(path, 404, f"path {path[:256]} was not found")
                    await response(scope, receive, send)
                    return
        await self.router(scope, receive, send)


class _ErrorGuard:
    """The last line: an exception escaping a route becomes Rekor's JSON 500 (and a log
    line), never the server's plain-text one; a client that left gets nothing."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return
        except Exception:
            _log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            response = api_error(scope.get("path", "/"), 500, "internal server error")
            # If the response had started, the server refuses a second one and closes.
            with contextlib.suppress(Exception):
                await response(scope, receive, send)


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
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            ClientDisconnect: _disconnected,
            Exception: _internal_error,
        },
    )
    starlette.state.service = service
    starlette.router.redirect_slashes = False
    app: ASGIApp = _ErrorGuard(_Dispatcher(service, starlette))
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
