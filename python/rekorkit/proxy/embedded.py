"""Running the proxy inside this process: a uvicorn server in a background thread.

For tests, examples and programs that embed a proxy; ``rekorkit proxy`` is
the stand-alone form.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rekorkit.proxy.app import create_app
from rekorkit.proxy.service import ProxyService
from rekorkit.proxy.sync import SyncJob, SyncMode
from rekorkit.tilecache import FileSystemTileCache

__all__ = ["RunningProxy", "serve_in_thread", "start_proxy", "start_proxy_process"]

_START_TIMEOUT = 30.0


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve an ASGI app (lifespan on) with uvicorn in a daemon thread; yield its URL.

    The server stops, finishing its lifespan shutdown, when the block exits.
    """
    import uvicorn

    # IPPROTO_TCP so asyncio sets TCP_NODELAY (small responses, no delayed-ACK wait).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # loop="asyncio": the caller's process keeps its own event-loop policy.
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT)
        sock.close()


@dataclass(frozen=True, slots=True)
class RunningProxy:
    """A proxy started by :func:`start_proxy`."""

    url: str
    service: ProxyService
    job: SyncJob | None


@contextmanager
def start_proxy(
    upstream: str,
    cache_dir: str | os.PathLike[str],
    vkey: str,
    *,
    sync: SyncMode | None = "edge",
    interval: float = 10.0,
    max_cache_bytes: int | None = None,
    checkpoint_ttl: float = 5.0,
) -> Iterator[RunningProxy]:
    """Run a verifying proxy for ``upstream`` on ``127.0.0.1`` (a free port) for the block.

    Args:
        upstream: the log's tile prefix.
        cache_dir: the tile cache directory.
        vkey: the log's note verifier key.
        sync: the background job's mode, or ``None`` for none.
        interval: seconds between sync passes.
        max_cache_bytes: the cache's size bound.
        checkpoint_ttl: see :class:`ProxyService`.
    """
    from rekorkit.note import parse_verifier_key

    with FileSystemTileCache(cache_dir, max_bytes=max_cache_bytes) as cache:
        service = ProxyService(
            upstream, cache, parse_verifier_key(vkey), checkpoint_ttl=checkpoint_ttl
        )
        job = None if sync is None else SyncJob(service, mode=sync, interval=interval)
        with serve_in_thread(create_app(service, job=job)) as url:
            yield RunningProxy(url, service, job)


def start_proxy_process(
    upstream: str, cache_dir: str | os.PathLike[str], vkey: str, *options: str
) -> tuple[subprocess.Popen[str], str]:
    """Start ``rekorkit proxy`` in a child process on a free loopback port.

    Args:
        upstream, cache_dir, vkey: as for :func:`start_proxy`.
        options: more ``rekorkit proxy`` options (``--sync``, ``--no-fsync``, ...).

    Returns:
        The process (stop it with SIGTERM) and the proxy's URL, once it listens.
    """
    cmd = [sys.executable, "-m", "rekorkit.cli", "proxy", upstream, "--cache", str(cache_dir)]
    cmd += ["--key", vkey, "--port", "0", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError("rekorkit proxy did not start")
