"""Run a real local log server in tests: ``rekorkit serve`` on an ephemeral loopback port.

In a pytest suite::

    from rekorkit.testing import rekor_server  # noqa: F401  (makes the fixture available)

    def test_submit(rekor_server):
        httpx.post(rekor_server.url + "/api/v2/log/entries", json=...)

Or anywhere, as a context manager::

    with start_server() as srv:          # a thread in this process
        ...
    with start_server(subprocess=True) as srv:   # a child process (srv.process)
        ...

The server binds ``127.0.0.1`` with port 0 and is stopped on exit. Fault
injection is on by default (loopback only), steered with :meth:`LocalRekor.set_faults`
and :meth:`LocalRekor.fork`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess as _subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["LocalRekor", "rekor_server", "start_server"]

_LISTENING = re.compile(r"listening on (http://\S+)")
_START_TIMEOUT = 30.0


@dataclass
class LocalRekor:
    """A running local log.

    Attributes:
        url: base URL (``http://127.0.0.1:PORT``), for v1, v2 and tile reads alike.
        data_dir: the server's data directory.
        origin: the C2SP checkpoint origin (= Ed25519 key name).
        v1_origin: the Rekor v1 checkpoint origin (``"<host> - <treeID>"``).
        checkpoint_vkey: the note verifier key for ``/checkpoint``.
        v1_vkey: the note verifier key for v1 checkpoints.
        public_key_pem: the v1 log key (SETs, v1 checkpoints).
        checkpoint_public_key_pem: the Ed25519 checkpoint key.
        v1_log_id: SHA-256 of the v1 key's SPKI.
        v2_log_id: the C2SP key ID of the checkpoint key.
        process: the child process when started with ``subprocess=True``.
    """

    url: str
    data_dir: Path
    origin: str
    v1_origin: str
    checkpoint_vkey: str
    v1_vkey: str
    public_key_pem: str
    checkpoint_public_key_pem: str
    v1_log_id: bytes
    v2_log_id: bytes
    process: _subprocess.Popen[str] | None = None
    _stop: Any = field(default=None, repr=False)
    _cleanup: Path | None = field(default=None, repr=False)

    # -- control ---------------------------------------------------------------
    def set_faults(
        self, *rules: dict[str, Any], replace: bool = True, seed: int | None = None
    ) -> dict[str, Any]:
        """Install fault rules (see :class:`rekorkit.server.faults.FaultRule`)."""
        body: dict[str, Any] = {"rules": list(rules), "replace": replace}
        if seed is not None:
            body["seed"] = seed
        return self._admin("POST", "/_rekorkit/faults", body)

    def clear_faults(self) -> dict[str, Any]:
        """Remove every fault rule and leave fork mode."""
        return self._admin("DELETE", "/_rekorkit/faults")

    def fork(
        self, *, at: int | None = None, extra: int = 1, readers: str = "all"
    ) -> dict[str, Any]:
        """Serve a forked tree (shared first ``at`` leaves, then ``extra`` forged ones)."""
        body: dict[str, Any] = {"extra": extra, "readers": readers}
        if at is not None:
            body["at"] = at
        return self._admin("POST", "/_rekorkit/fork", body)

    def unfork(self) -> dict[str, Any]:
        """Serve the real tree again."""
        return self._admin("DELETE", "/_rekorkit/fork")

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = httpx.request(method, self.url + path, json=body, timeout=30)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def stop(self) -> None:
        """Stop the server (and remove its data directory if this helper made it)."""
        if self._stop is not None:
            self._stop()
            self._stop = None
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None

    def kill(self) -> None:
        """SIGKILL the child process (``subprocess=True`` only): a crash, no cleanup."""
        if self.process is None:
            raise RuntimeError("kill() needs a server started with subprocess=True")
        self.process.kill()
        self.process.wait(timeout=10)
        self._stop = None

    def __enter__(self) -> LocalRekor:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _info(url: str, data_dir: Path, service: Any) -> dict[str, Any]:
    log = service.log
    ident = log.identity
    return {
        "url": url,
        "data_dir": data_dir,
        "origin": ident.origin,
        "v1_origin": ident.v1_origin,
        "checkpoint_vkey": log.signer.verifier().vkey,
        "v1_vkey": log.v1_signer.verifier().vkey,
        "public_key_pem": ident.ecdsa_public_pem,
        "checkpoint_public_key_pem": ident.ed25519_public_pem,
        "v1_log_id": ident.v1_log_id,
        "v2_log_id": ident.v2_log_id,
    }


def start_server(
    data_dir: Path | str | None = None,
    *,
    origin: str | None = None,
    read_only: bool = False,
    faults: bool = True,
    seed: int = 0,
    subprocess: bool = False,
    fsync: bool = True,
    batch_wait: float = 0.002,
    max_batch: int = 1024,
    max_body: int | None = None,
    integration_delay: float = 0.0,
    request_timeout: float | None = None,
    max_connections: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> LocalRekor:
    """Start a log server on ``127.0.0.1`` with an ephemeral port and wait until it answers.

    Args:
        data_dir: where the log lives (default: a temporary directory removed on stop).
        origin: the log name for a new log.
        read_only: refuse writes (405).
        faults: enable fault injection (loopback admin endpoints).
        seed: preload this many synthetic signed entries.
        subprocess: run ``rekorkit serve`` in a child process instead of a thread.
        fsync: make batches durable (off only for throwaway benchmark data).
        batch_wait, max_batch, max_body, integration_delay, request_timeout,
            max_connections: see :class:`~rekorkit.server.ServerOptions` (None: its default).
        extra_args: more ``rekorkit serve`` options (subprocess mode).
    """
    cleanup = None
    if data_dir is None:
        cleanup = Path(tempfile.mkdtemp(prefix="rekorkit-"))
        data_dir = cleanup
    data_dir = Path(data_dir)
    if subprocess:
        return _start_process(
            data_dir,
            cleanup,
            origin=origin,
            read_only=read_only,
            faults=faults,
            seed=seed,
            fsync=fsync,
            batch_wait=batch_wait,
            max_batch=max_batch,
            max_body=max_body,
            integration_delay=integration_delay,
            extra_args=_limit_args(request_timeout, max_connections) + tuple(extra_args),
        )
    from rekorkit.server.service import ServerOptions, open_service

    limits: dict[str, Any] = {}
    if max_body:
        limits["max_body"] = max_body
    if request_timeout is not None:
        limits["request_timeout"] = request_timeout
    if max_connections is not None:
        limits["max_connections"] = max_connections
    options = ServerOptions(
        read_only=read_only,
        faults=faults,
        max_batch=max_batch,
        batch_wait=batch_wait,
        integration_delay=integration_delay,
        **limits,
    )
    service = open_service(data_dir, host=origin, options=options, fsync=fsync)
    if seed:
        from rekorkit.server.seed import seed_log

        seed_log(service.log, seed)
    return _start_thread(service, data_dir, cleanup)


def _limit_args(request_timeout: float | None, max_connections: int | None) -> tuple[str, ...]:
    args: tuple[str, ...] = ()
    if request_timeout is not None:
        args += ("--request-timeout", str(request_timeout))
    if max_connections is not None:
        args += ("--max-connections", str(max_connections))
    return args


def _start_thread(service: Any, data_dir: Path, cleanup: Path | None) -> LocalRekor:
    import socket

    import uvicorn

    from rekorkit.server.app import create_app
    from rekorkit.server.connections import server_config

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it small responses wait ~40 ms for delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # loop="asyncio": the server shares this process (and its event-loop policy) with the
    # caller's tests, so it must not switch the process to uvloop.
    config = server_config(create_app(service), service.options, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"rekorkit-serve-{port}"
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            service.close()
            raise RuntimeError("local log server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        service.close()

    handle = LocalRekor(**_info(f"http://127.0.0.1:{port}", data_dir, service))
    handle._stop = stop
    handle._cleanup = cleanup
    return handle


def _start_process(
    data_dir: Path,
    cleanup: Path | None,
    *,
    origin: str | None,
    read_only: bool,
    faults: bool,
    seed: int,
    fsync: bool,
    batch_wait: float,
    max_batch: int,
    max_body: int | None,
    integration_delay: float,
    extra_args: tuple[str, ...],
) -> LocalRekor:
    cmd = [
        sys.executable,
        "-m",
        "rekorkit.cli",
        "serve",
        "--data",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--batch-wait-ms",
        str(batch_wait * 1000),
        "--batch-size",
        str(max_batch),
        "--integration-delay-ms",
        str(integration_delay * 1000),
    ]
    if origin:
        cmd += ["--origin", origin]
    if read_only:
        cmd.append("--read-only")
    if faults:
        cmd.append("--faults")
    if seed:
        cmd += ["--seed", str(seed)]
    if not fsync:
        cmd.append("--no-fsync")
    if max_body:
        cmd += ["--max-body", str(max_body)]
    cmd += list(extra_args)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = _subprocess.Popen(
        cmd, stdout=_subprocess.PIPE, stderr=_subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    url: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not url:
                url.append(m.group(1))

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if url and _healthy(url[0]):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("rekorkit serve did not start:\n" + "\n".join(lines[-20:]))
        time.sleep(0.02)
    info = _parse_banner(lines, url[0], data_dir)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except _subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    handle = LocalRekor(**info, process=proc)
    handle._stop = stop
    handle._cleanup = cleanup
    return handle


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _parse_banner(lines: list[str], url: str, data_dir: Path) -> dict[str, Any]:
    """Read the start-up banner printed by ``rekorkit serve``."""
    fields: dict[str, str] = {}
    pems: dict[str, list[str]] = {"v1 public key": [], "checkpoint public key": []}
    current: str | None = None
    for line in lines:
        if line in ("v1 public key:", "checkpoint public key:"):
            current = line[:-1]
            continue
        if current is not None:
            pems[current].append(line)
            if line.startswith("-----END"):
                current = None
            continue
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return {
        "url": url,
        "data_dir": data_dir,
        "origin": fields["origin"],
        "v1_origin": fields["v1 origin"],
        "checkpoint_vkey": fields["checkpoint verifier key"],
        "v1_vkey": fields["v1 verifier key"],
        "public_key_pem": "\n".join(pems["v1 public key"]) + "\n",
        "checkpoint_public_key_pem": "\n".join(pems["checkpoint public key"]) + "\n",
        "v1_log_id": bytes.fromhex(fields["v1 log ID"]),
        "v2_log_id": bytes.fromhex(fields["v2 log ID"]),
    }


try:
    import pytest
except ImportError:  # pragma: no cover - the fixture needs pytest, the rest does not
    pass
else:

    @pytest.fixture
    def rekor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
        """A fresh local log for one test (thread mode, faults enabled, stopped after)."""
        server = start_server(tmp_path_factory.mktemp("rekor"))
        try:
            yield server
        finally:
            server.stop()
