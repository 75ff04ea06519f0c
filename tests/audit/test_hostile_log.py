"""``rekorkit verify`` against a hostile log: memory stays bounded and the run ends.

A raw-socket server sits in front of a real local log and forwards every
request, except on one route, where it attacks instead: a huge declared
length, an endless body, a gzip bomb, stacked gzip, endless headers, or a
response dripped one byte at a time. Each route the engine reads is attacked
(the ``--api auto`` probe, the checkpoint, hash tiles, entry bundles, and the
v1 log info, entries and consistency proofs). ``rekorkit verify`` runs as a
child process with a short ``--timeout``; it must exit 1 or 2, well within
what its retries allow, with a peak RSS under 500 MB (the child's own
``ru_maxrss`` from ``os.wait4``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rekorkit.client import RekorV1Client
from rekorkit.entries.canonical import hashedrekord_v001_request
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server

TIMEOUT = 1.0  # --timeout of every run
ATTACK_SECONDS = 30.0  # no attack writes for longer than this (bounded server loops)
# 5 attempts of at most TIMEOUT each, the backoff between them (at most
# 0.25 + 0.5 + 1 + 2 s), and interpreter start-up on a shared 2-core machine.
RUN_BOUND = 45.0
RSS_LIMIT_KB = 500 * 1024
BOMB_BYTES = 1 << 30  # what the gzip bomb inflates to


@dataclass(frozen=True)
class Route:
    """A route the engine reads: which requests to attack, and the command's arguments."""

    name: str
    api: str
    matches: Callable[[str, str], bool]  # (method, path) -> attack this request?
    needs_store: bool = False


ROUTES = [
    Route("auto-probe", "auto", lambda m, p: p == "/checkpoint"),
    Route("checkpoint", "v2", lambda m, p: p == "/checkpoint"),
    Route("tiles", "v2", lambda m, p: p.startswith("/tile/") and "/entries/" not in p),
    Route("bundles", "v2", lambda m, p: p.startswith("/tile/entries/")),
    Route("v1-log-info", "v1", lambda m, p: p == "/api/v1/log"),
    Route("v1-entries", "v1", lambda m, p: p == "/api/v1/log/entries/retrieve"),
    Route("v1-proofs", "v1", lambda m, p: p.startswith("/api/v1/log/proof"), needs_store=True),
]


def _gzip(chunks: Iterator[bytes]) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(z.compress(c) for c in chunks) + z.flush()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1 GiB of zeros, gzipped (about 1 MB)."""
    zeros = bytes(1 << 20)
    return _gzip(zeros for _ in range(BOMB_BYTES >> 20))


def _head(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra


def _send_until(sock: socket.socket, chunks: Iterator[bytes], gap: float = 0.0) -> None:
    """Write chunks until the client goes away or ATTACK_SECONDS pass."""
    stop = time.monotonic() + ATTACK_SECONDS
    try:
        for chunk in chunks:
            if time.monotonic() > stop:
                return
            sock.sendall(chunk)
            if gap:
                time.sleep(gap)
    except OSError:
        return


def _forever(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def attack_huge_length(sock: socket.socket, bomb: bytes) -> None:
    _send_until(sock, iter([_head(b"Content-Length: 1099511627776\r\n\r\n")]))
    _send_until(sock, _forever(bytes(65536)))


def attack_endless_body(sock: socket.socket, bomb: bytes) -> None:
    _send_until(sock, iter([_head(b"Transfer-Encoding: chunked\r\n\r\n")]))
    _send_until(sock, _forever(b"10000\r\n" + b"7" * 65536 + b"\r\n"))


def attack_gzip_bomb(sock: socket.socket, bomb: bytes) -> None:
    head = _head(b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
    _send_until(sock, iter([head, bomb]))


def attack_stacked_gzip(sock: socket.socket, bomb: bytes) -> None:
    twice = _gzip(iter([bomb]))
    head = _head(b"Content-Encoding: gzip, gzip\r\nContent-Length: %d\r\n\r\n" % len(twice))
    _send_until(sock, iter([head, twice]))


def attack_endless_headers(sock: socket.socket, bomb: bytes) -> None:
    _send_until(sock, iter([b"HTTP/1.1 200 OK\r\n"]))
    _send_until(sock, (b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(10**9)))


def attack_drip(sock: socket.socket, bomb: bytes) -> None:
    response = _head(b"Content-Length: 100000\r\n\r\n") + b"{" * 100000
    _send_until(sock, (response[i : i + 1] for i in range(len(response))), gap=0.05)


ATTACKS = {
    "huge-content-length": attack_huge_length,
    "endless-body": attack_endless_body,
    "gzip-bomb": attack_gzip_bomb,
    "stacked-gzip": attack_stacked_gzip,
    "endless-headers": attack_endless_headers,
    "one-byte-drip": attack_drip,
}


class HostileLog(socketserver.ThreadingTCPServer):
    """Forwards to ``upstream`` except the requests ``route`` matches, which get ``attack``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, route: Route, attack: str, bomb: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.removeprefix("http://")
        self.route = route
        self.attack = ATTACKS[attack]
        self.bomb = bomb
        self.attacked = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    server: HostileLog

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(ATTACK_SECONDS)
        buf = b""
        try:
            for _ in range(10_000):  # requests on one keep-alive connection
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data or len(buf) > 1 << 20:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
                while len(buf) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                if self.server.route.matches(method, target.split("?", 1)[0]):
                    self.server.attacked += 1
                    self.server.attack(sock, self.server.bomb)
                    return
                sock.sendall(self._forward(method, target, headers, body))
        except OSError:
            return

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        try:
            keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
            conn.request(method, target, body=body or None, headers=keep)
            resp = conn.getresponse()
            data = resp.read()
            lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    lines.append(f"{k}: {v}")
            lines.append(f"Content-Length: {len(data)}")
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data
        finally:
            conn.close()


@dataclass
class Outcome:
    status: int
    seconds: float
    max_rss_kb: int
    stderr: str
    attacked: int


def _verify(argv: list[str], cwd: Path) -> tuple[int, float, int, str]:
    """Run ``rekorkit verify`` as a child; its exit status, wall time, peak RSS (KiB), stderr."""
    code = "import sys; from rekorkit.cli import main; sys.exit(main(sys.argv[1:]))"
    err = cwd / "stderr.txt"
    with open(err, "w") as stderr:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "verify", *argv],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "COLUMNS": "200"},
        )
        deadline = t0 + RUN_BOUND + 30
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_maxrss, err.read_text()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRekor, Path]]:
    """A local log, and a store holding its v1 checkpoint from before it grew by one entry
    (so a v1 run with that store asks for a consistency proof)."""
    with start_server(seed=300, faults=False, fsync=False) as srv:
        base = tmp_path_factory.mktemp("hostile") / "base.duckdb"
        status, _, _, stderr = _verify(
            [srv.url, "--api", "v1", "--key", srv.v1_vkey, "--db", str(base)], base.parent
        )
        assert status == 0, stderr
        key = ec.generate_private_key(ec.SECP256R1())
        digest = hashlib.sha256(b"one more entry").digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        verifier = parse_verifier_key(srv.v1_vkey)
        with RekorV1Client(srv.url, public_key=srv.public_key_pem, verifier=verifier) as c:
            c.submit(hashedrekord_v001_request(sig, key.public_key(), digest))
        yield srv, base


def _run_case(
    srv: LocalRekor, base: Path, route: Route, attack: str, bomb: bytes, tmp: Path
) -> Outcome:
    work = tmp / route.name
    work.mkdir()
    hostile = HostileLog(srv.url, route, attack, bomb)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    try:
        key = srv.v1_vkey if route.api == "v1" else srv.checkpoint_vkey
        argv = [hostile.url, "--api", route.api, "--key", key, "--timeout", str(TIMEOUT)]
        if route.needs_store:
            shutil.copy(base, work / "s.duckdb")
            argv += ["--db", str(work / "s.duckdb")]
        else:
            argv += ["--no-store"]
        status, seconds, rss, stderr = _verify(argv, work)
    finally:
        hostile.shutdown()
        hostile.server_close()
    return Outcome(status, seconds, rss, stderr, hostile.attacked)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_log_every_route(
    attack: str, log: tuple[LocalRekor, Path], bomb: bytes, tmp_path: Path
) -> None:
    srv, base = log
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            r.name: pool.submit(_run_case, srv, base, r, attack, bomb, tmp_path) for r in ROUTES
        }
        outcomes = {name: f.result() for name, f in futures.items()}
    for name, out in outcomes.items():
        print(
            f"{attack:20} {name:12} exit {out.status} {out.seconds:5.1f} s "
            f"{out.max_rss_kb >> 10} MiB"
        )
        where = f"{attack} on {name}: {out.stderr[-600:]}"
        assert out.attacked >= 1, f"the route was never read ({where})"
        assert out.status in (1, 2), where
        assert out.seconds < RUN_BOUND, where
        assert out.max_rss_kb < RSS_LIMIT_KB, f"peak RSS {out.max_rss_kb} KiB; {where}"
