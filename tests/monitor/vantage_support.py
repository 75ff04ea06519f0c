"""Vantage-point fixtures shared by the split-view tests: one-round runs, copies of
a log, a refused port and a server that answers fixed bodies."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitor_support import submit_signed
from rekorkit.monitor import CallbackPublisher, LogConfig, MonitorConfig, RekorSyncService, Vantage
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server

FORK_VIEW = {"x-rekorkit-view": "fork"}


def v1_config(srv: LocalRekor, db: Path, *vantage: Vantage) -> MonitorConfig:
    log = LogConfig("v1", srv.url, srv.v1_vkey, api="v1", vantage=vantage, timeout=5.0)
    return MonitorConfig(db=str(db), logs=(log,))


def run_once(cfg: MonitorConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One round of a one-log configuration; the alerts delivered and the log's status."""
    delivered: list[dict[str, Any]] = []

    async def go() -> dict[str, Any]:
        svc = RekorSyncService(cfg, publishers=[CallbackPublisher(delivered.append)])
        try:
            (status,) = (await svc.sync_once()).values()
            return status.to_json()
        finally:
            await svc.stop()

    status = asyncio.run(go())
    return delivered, status


def sightings(db: Path, origin: str) -> dict[str, set[int]]:
    """Per source, the sizes recorded as seen there."""
    out: dict[str, set[int]] = {}
    with DuckDBStore(db, read_only=True) as store:
        for size, _root, source, _first, _last in store.sightings(origin):
            out.setdefault(source, set()).add(size)
    return out


@contextmanager
def two_copies(tmp: Path, seed: int, more: int) -> Iterator[tuple[LocalRekor, LocalRekor]]:
    """The same log twice: ``seed`` entries, and a copy of it ``more`` entries ahead."""
    with start_server(tmp / "base", seed=seed):
        pass
    shutil.copytree(tmp / "base", tmp / "ahead")
    with start_server(tmp / "base") as base, start_server(tmp / "ahead") as ahead:
        submit_signed(ahead, more)
        yield base, ahead


@contextmanager
def closed_port() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def fixed_answers(answers: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server answering 200 with a fixed body per path (404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path.split("?", 1)[0])
            self.send_response(404 if body is None else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as url:
        yield url


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a loopback port in a thread; its URL while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
