"""``rekorkit serve``: run a local Rekor-compatible log (v1 + v2 APIs, tiles).

Prints the origin, the verifier keys and the v1 public key on start, then a
``listening on http://HOST:PORT`` line once the socket accepts connections
(scripts and :mod:`rekorkit.testing` connect as soon as they read it), and
serves until interrupted (SIGINT or SIGTERM: a clean stop, exit status 0).
:func:`serve_asgi` runs any ASGI app that way (the tile proxy does).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from rekorkit.server.app import create_app
from rekorkit.server.connections import server_config
from rekorkit.server.faults import is_loopback
from rekorkit.server.responses import DEFAULT_MAX_BODY
from rekorkit.server.service import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    LogService,
    ServerOptions,
    open_service,
)

__all__ = ["bind_socket", "configure", "run", "serve_asgi"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    parser.add_argument("--data", required=True, help="data directory (keys, tiles, index)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (0 picks a free one)")
    parser.add_argument(
        "--origin", default=None, help="log name for a new log (default rekor-local)"
    )
    parser.add_argument("--read-only", action="store_true", help="freeze the log: 405 on writes")
    parser.add_argument(
        "--faults",
        action="store_true",
        help="enable fault injection and /_rekorkit/ admin endpoints (loopback only)",
    )
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for fractional faults")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="request body limit")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="time for a client to send a whole request (then 408 and close)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open connections at once (more get 503 and are closed)",
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="most entries per batch")
    parser.add_argument("--batch-wait-ms", type=float, default=4.0, help="batch collection window")
    parser.add_argument(
        "--integration-delay-ms",
        type=float,
        default=0.0,
        help="extra delay per batch (to test client timeouts)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="preload N synthetic entries"
    )
    parser.add_argument(
        "--seed-hashedrekord",
        type=float,
        default=0.1,
        metavar="SHARE",
        help="share of seeded entries that are hashedrekord (the rest DSSE)",
    )
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (throwaway data only)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status."""
    if args.faults and not is_loopback(args.host):
        print("error: --faults is only allowed on a loopback address", file=sys.stderr)
        return 2
    try:
        options = ServerOptions(
            read_only=args.read_only,
            faults=args.faults,
            max_body=args.max_body,
            max_batch=args.batch_size,
            batch_wait=args.batch_wait_ms / 1000,
            integration_delay=args.integration_delay_ms / 1000,
            fault_seed=args.fault_seed,
            request_timeout=args.request_timeout,
            max_connections=args.max_connections,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        service = open_service(
            args.data, host=args.origin, options=options, fsync=not args.no_fsync
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # StoreError and friends: say what, not a traceback
        print(f"error: cannot open log in {args.data}: {exc}", file=sys.stderr)
        return 2
    if args.seed:
        from rekorkit.server.seed import seed_log

        t0 = time.perf_counter()
        stats = seed_log(service.log, args.seed, hashedrekord_share=args.seed_hashedrekord)
        dt = time.perf_counter() - t0
        print(
            f"seeded {stats.entries} entries in {dt:.2f}s ({stats.entries / dt:,.0f}/s)", flush=True
        )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        service.close()
        return 2
    banner = describe(service, args.host, sock.getsockname()[1])
    logging.getLogger(__name__).debug("serving %s", args.data)
    try:
        serve_asgi(create_app(service), sock, banner, options=options, log_level=args.log_level)
    finally:
        service.close()
    return 0


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when ``host`` has a colon), not yet listening.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it small responses wait ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve_asgi(
    app: ASGIApp,
    sock: socket.socket,
    banner: list[str],
    *,
    options: ServerOptions,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, with the log server's connection limits.

    The request deadline and connection bound of ``options``
    (:func:`rekorkit.server.connections.server_config`) apply; ``banner`` is
    printed once the socket listens. uvicorn shuts down gracefully on a signal
    (the lifespan finishes the work in hand), then raises it again: that
    second SIGTERM (or the KeyboardInterrupt) is a clean stop, so this returns.
    """
    server = _AnnouncingServer(server_config(app, options, log_level=log_level), banner)
    # Signal handlers can only be set from the main thread (as uvicorn's own).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped) if main else None
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class _Stopped(Exception):
    """SIGTERM arrived again after uvicorn's graceful shutdown."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


class _AnnouncingServer(uvicorn.Server):
    """Prints the banner once the socket listens and the application has started, so a
    client that connects the moment it reads ``listening on`` is never refused."""

    def __init__(self, config: uvicorn.Config, banner: list[str]):
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for line in self.banner:
                print(line, flush=True)


def describe(service: LogService, host: str, port: int) -> list[str]:
    """The start-up banner: origin, verifier keys, public key, URL (last line)."""
    log = service.log
    ident = log.identity
    state = log.state
    url_host = f"[{host}]" if ":" in host else host
    lines = [
        f"origin: {ident.origin}",
        f"v1 origin: {ident.v1_origin}",
        f"tree size: {state.size}",
        f"checkpoint verifier key: {log.signer.verifier().vkey}",
        f"v1 verifier key: {log.v1_signer.verifier().vkey}",
        f"v1 log ID: {ident.v1_log_id.hex()}",
        f"v2 log ID: {ident.v2_log_id.hex()}",
        "v1 public key:",
        *ident.ecdsa_public_pem.strip().splitlines(),
        "checkpoint public key:",
        *ident.ed25519_public_pem.strip().splitlines(),
    ]
    if service.options.read_only:
        lines.append("read-only: writes are refused (405)")
    if service.options.faults:
        lines.append("fault injection: enabled (/_rekorkit/faults, /_rekorkit/fork)")
    lines.append(f"listening on http://{url_host}:{port}")
    return lines
