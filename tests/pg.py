"""A real PostgreSQL 16 for the tests and benchmarks, from the ``pgserver`` wheel.

``pgserver`` ships PostgreSQL's binaries on PyPI; this module runs them
directly (``initdb``, then ``pg_ctl start``) so a test can stop, kill and
restart the server. PostgreSQL refuses to run as root: under root the server
runs as an unprivileged system user, created on first use with ``useradd``
(the way ``pgserver`` itself does it), and its data directory is handed to
that user. The server listens on ``127.0.0.1`` on a free port and on a Unix
socket in its own directory.

Fixtures (import them into a test module or ``conftest.py``):

* ``pg_server``: one server per test session, stopped at the end;
* ``pg_url``: a fresh database on it per test (dropped afterwards), as a
  ``postgresql://`` URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresServer", "pg_server", "pg_url", "start_postgres"]

# The unprivileged account the server runs as when the tests run as root.
SERVER_USER = "rekorkit-pg"
START_TIMEOUT = 60


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # the dev extra installs it; say so instead of skipping
        raise RuntimeError(
            "PostgreSQL for the tests comes from the pgserver wheel: pip install pgserver"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The system user to run PostgreSQL as: ``None`` unless we are root."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SERVER_USER)
    ensure_prefix_permissions(_bin_dir())  # the user must reach the binaries
    return SERVER_USER


class PostgresServer:
    """One PostgreSQL server in a temporary directory, with start/stop/kill for fault tests.

    Args:
        base: directory for the data directory, the socket and the log.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.log = base / "server.log"
        self.port = _free_port()
        self.user = _run_as()
        self._init()

    def _cmd(self, name: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        subprocess.run(
            [str(_bin_dir() / name), *args],
            check=True,
            user=self.user,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _init(self) -> None:
        for path in (self.base, self.data, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        if self.user is not None:
            for path in (self.data, self.socket_dir):
                shutil.chown(path, self.user, self.user)
            self.log.touch()
            shutil.chown(self.log, self.user, self.user)
        self._cmd("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` maintenance database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` over TCP on loopback."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.socket_dir} -c max_connections=200"
        self._cmd(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
            "-t", str(START_TIMEOUT), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort sessions; ``immediate``: like a crash)."""
        self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port and data."""
        self.stop(mode)
        self.start()

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, closing its sessions first."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """A running server in a temporary directory, stopped and removed on exit."""
    base = Path(tempfile.mkdtemp(prefix="rekorkit-pg-"))
    server = PostgresServer(base)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session."""
    with start_postgres() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh database per test, as a ``postgresql://`` URL."""
    url = pg_server.create_database()
    yield url
    if _is_running(pg_server):
        pg_server.drop_database(url)


def _is_running(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.url, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False
