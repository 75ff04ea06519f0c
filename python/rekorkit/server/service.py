"""The log service behind the routes: the log, its integrator, options, faults and fork.

Routes (:mod:`rekorkit.server.v1`, :mod:`rekorkit.server.v2`) and the ASGI
application (:mod:`rekorkit.server.app`) import this module; it imports none of
them, so there is no cycle, not even for the type checker.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import Scope

from rekorkit.errors import MalformedError
from rekorkit.server.faults import FaultController
from rekorkit.server.fork import ForkView
from rekorkit.server.integrator import Integrator
from rekorkit.server.log import TransparencyLog
from rekorkit.server.responses import DEFAULT_MAX_BODY
from rekorkit.server.storage import TileStore
from rekorkit.server.v1_reads import V1EntryReader

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT",
    "LogService",
    "ServerOptions",
    "open_service",
]

# A whole request (headers and body, up to ``max_body``) must arrive within this many
# seconds: 4 MiB in 30 s is about 140 KB/s, far below any link a log client uses.
DEFAULT_REQUEST_TIMEOUT = 30.0
# Open connections at once; each costs a file descriptor and a few KiB.
DEFAULT_MAX_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the server behaves.

    Attributes:
        read_only: refuse writes with 405 (a frozen shard).
        faults: enable fault injection and the ``/_rekorkit/`` admin endpoints
            (only allowed when serving on loopback).
        max_body: request body limit in bytes (413 above it).
        max_batch: most entries per integration batch.
        batch_wait: seconds to collect a batch after its first entry.
        integration_delay: extra seconds before each batch (client-timeout tests).
        fault_seed: seed for fractional faults (reproducible runs).
        request_timeout: seconds for a client to send a whole request (headers and
            body) and to take a response it stalled; the connection is closed after
            (a 408 when nothing was answered yet).
        max_connections: connections open at once; more are answered 503 and closed.
    """

    read_only: bool = False
    faults: bool = False
    max_body: int = DEFAULT_MAX_BODY
    max_batch: int = 1024
    batch_wait: float = 0.004
    integration_delay: float = 0.0
    fault_seed: int | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, not {self.request_timeout}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        if self.max_body < 0:
            raise ValueError(f"max_body must not be negative, not {self.max_body}")


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


def open_service(
    data_dir: Path | str,
    *,
    host: str | None = None,
    options: ServerOptions | None = None,
    fsync: bool = True,
) -> LogService:
    """Open (or create) the log in ``data_dir`` and wrap it in a service."""
    return LogService(TransparencyLog(data_dir, host=host, fsync=fsync), options)
