"""``rekorkit serve`` against hostile clients: partial requests, connection floods,
malformed requests of every shape, ill-typed admin input, and the start-up banner.

Every case runs against a real server on 127.0.0.1 and every loop is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit.testing import LocalRekor, start_server

TIMEOUT = 1.0  # the server's request timeout in these tests


@pytest.fixture(scope="module")
def guarded() -> Iterator[LocalRekor]:
    with start_server(request_timeout=TIMEOUT, seed=300, fsync=False) as srv:
        yield srv


def _addr(srv: LocalRekor) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _read_until_closed(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``deadline`` passes (False)."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _status_and_json(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


# -- slowloris -----------------------------------------------------------------------------
def test_partial_requests_are_timed_out_while_others_are_served(guarded: LocalRekor) -> None:
    addr = _addr(guarded)
    shapes = [
        b"",  # connects and sends nothing
        b"GET /checkpoint HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /api/v1/log/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",  # body
        b"\r\n\r\n",  # stray line breaks only, never a request line
    ]
    socks = []
    start = time.monotonic()
    for n in range(300):
        s = socket.create_connection(addr, timeout=5)
        s.sendall(shapes[n % len(shapes)])
        socks.append((n % len(shapes), s))
    # A normal client is served while the 300 connections hang.
    with httpx.Client(base_url=guarded.url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/checkpoint").status_code == 200
    closed_after = []
    try:
        for shape, s in socks:
            data, closed = _read_until_closed(s, start + TIMEOUT + 5)
            assert closed, f"shape {shape} still open after {TIMEOUT + 5} s"
            closed_after.append(time.monotonic() - start)
            if shape:
                status, body = _status_and_json(data)
                assert status == 408 and body["code"] == 408, data
                assert "within 1 seconds" in body["message"]
            else:
                assert data == b""  # nothing was asked: nothing is answered
    finally:
        for _, s in socks:
            s.close()
    # Closed once the deadline passed, not before it.
    assert min(closed_after) >= TIMEOUT * 0.9
    assert max(closed_after) < TIMEOUT + 5


def test_a_dripped_request_is_cut_at_the_deadline(guarded: LocalRekor) -> None:
    request = b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    with socket.create_connection(_addr(guarded), timeout=5) as s:
        start = time.monotonic()
        sent = 0
        data = b""
        while sent < len(request) and time.monotonic() - start < TIMEOUT + 3:
            try:
                s.sendall(request[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            ready, _, _ = select.select([s], [], [], 0.05)
            if ready:
                break  # the server answered (and closes)
        data, closed = _read_until_closed(s, time.monotonic() + 3)
        elapsed = time.monotonic() - start
    assert closed and sent < len(request), "the drip outlived the deadline"
    assert _status_and_json(data)[0] == 408
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 3


def test_keep_alive_connections_get_a_fresh_deadline_per_request(guarded: LocalRekor) -> None:
    # Requests spread over more than the deadline on one connection are all served.
    with httpx.Client(base_url=guarded.url, timeout=5) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(TIMEOUT * 0.6)


def test_endless_headers_are_capped(guarded: LocalRekor) -> None:
    with socket.create_connection(_addr(guarded), timeout=5) as s:
        s.sendall(b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Big: ")
        data = b""
        for _ in range(64):  # up to 4 MiB, far past the 64 KiB cap
            try:
                s.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
        data, closed = _read_until_closed(s, time.monotonic() + 3)
    assert closed
    if data:  # the reset may overtake the answer; if it arrived, it is Rekor's JSON
        status, body = _status_and_json(data)
        assert status == 431 and body["code"] == 431


def test_open_connections_are_bounded(tmp_path: Path) -> None:
    with start_server(tmp_path / "log", max_connections=16, fsync=False) as srv:
        idle = [socket.create_connection(_addr(srv), timeout=5) for _ in range(16)]
        try:
            time.sleep(0.2)  # let the server accept them
            r = httpx.get(srv.url + "/healthz", timeout=5)
            assert r.status_code == 503 and r.json()["code"] == 503
        finally:
            for s in idle:
                s.close()
        for _ in range(50):  # the slots free up as the server sees the closes
            r = httpx.get(srv.url + "/healthz", timeout=5)
            if r.status_code == 200:
                break
            time.sleep(0.05)
        assert r.status_code == 200


def test_a_client_that_stops_reading_is_dropped(tmp_path: Path) -> None:
    with start_server(tmp_path / "log", seed=256, request_timeout=TIMEOUT, fsync=False) as srv:
        bundle = httpx.get(srv.url + "/tile/entries/000").content
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(_addr(srv))
        n = (32 << 20) // len(bundle) + 1  # far more than the socket buffers hold
        s.sendall(b"GET /tile/entries/000 HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        time.sleep(TIMEOUT + 1.5)  # read nothing while the deadline passes
        data, closed = _read_until_closed(s, time.monotonic() + 10)
        s.close()
        assert closed and len(data) < n * len(bundle)
        assert httpx.get(srv.url + "/healthz").status_code == 200


# -- errors are Rekor's JSON -------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("DELETE", "/api/v1/log", 405, 405),
        ("PUT", "/api/v1/log/entries", 405, 405),
        ("POST", "/api/v1/log/publicKey", 405, 405),
        ("GET", "/api/v2/log/entries", 405, 12),
        ("GET", "/api/v1/nope", 404, 404),
        ("GET", "/api/v2/nope", 404, 5),
        ("GET", "/nope/../../etc/passwd", 404, 404),
        ("GET", "/tile/0/999", 404, 404),
        ("GET", "/tile/0/0x1", 404, 404),
        ("GET", "/_rekorkit/nope", 404, 404),
    ],
)
def test_routing_errors_are_rekor_json(
    guarded: LocalRekor, method: str, path: str, status: int, code: int
) -> None:
    r = httpx.request(method, guarded.url + path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["code"] == code and body["message"]
    if status == 405:
        assert method in body["message"]


def test_oversized_and_malformed_bodies_are_rekor_json(tmp_path: Path) -> None:
    with (
        start_server(tmp_path / "log", max_body=1024, fsync=False) as srv,
        httpx.Client(base_url=srv.url) as client,
    ):
        for path in ("/api/v1/log/entries", "/api/v1/log/entries/retrieve", "/api/v2/log/entries"):
            r = client.post(path, content=b"x" * 5000)
            assert r.status_code == 413 and r.json()["message"].endswith("Limit set to 1024")
            r = client.post(path, content=b"[" * 1000)
            assert r.status_code == 400 and r.json()["message"], path
            r = client.post(path, content=b"\xff\xfe{")
            assert r.status_code == 400 and r.json()["message"], path


def test_malformed_http_is_a_json_400(guarded: LocalRekor) -> None:
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
    ):
        with socket.create_connection(_addr(guarded), timeout=5) as s:
            s.sendall(raw)
            data, closed = _read_until_closed(s, time.monotonic() + 3)
        status, body = _status_and_json(data)
        assert closed and status == 400 and body["code"] == 400, raw


# -- strict integers ---------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["١٢", "1_0", "+5", " 1", "1 ", "0x1", "1e3", "", "9" * 20, "²"])
def test_log_index_is_ascii_digits_only(guarded: LocalRekor, raw: str) -> None:
    r = httpx.get(guarded.url + "/api/v1/log/entries", params={"logIndex": raw})
    assert r.status_code == 422 and r.json()["code"] == 601, raw
    r = httpx.get(guarded.url + "/api/v1/log/proof", params={"firstSize": raw, "lastSize": "5"})
    assert r.status_code == 422 and r.json()["code"] == 601, raw


def test_log_index_digits_and_bounds(guarded: LocalRekor) -> None:
    assert httpx.get(guarded.url + "/api/v1/log/entries?logIndex=12").json()
    assert httpx.get(guarded.url + "/api/v1/log/entries?logIndex=0012").status_code == 200
    r = httpx.get(guarded.url + "/api/v1/log/entries?logIndex=-1")
    assert r.status_code == 422 and r.json()["code"] == 609
    assert httpx.get(guarded.url + f"/api/v1/log/entries?logIndex={2**63 - 1}").status_code == 404
    assert httpx.get(guarded.url + f"/api/v1/log/entries?logIndex={2**63}").status_code == 422


# -- fault rules -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"rules": [{"path_prefix": 5}]}, "rules[0].path_prefix"),
        ({"rules": [{"fraction": "0.5"}]}, "rules[0].fraction"),
        ({"rules": [{"fraction": 2}]}, "rules[0].fraction"),
        ({"rules": [{"status": "503"}]}, "rules[0].status"),
        ({"rules": [{"status": True}]}, "rules[0].status"),
        ({"rules": [{"count": -1}]}, "rules[0].count"),
        ({"rules": [{"count": 1.5}]}, "rules[0].count"),
        ({"rules": [{"latency": 1e9}]}, "rules[0].latency"),
        ({"rules": [{"method": ["GET"]}]}, "rules[0].method"),
        ({"rules": [{"html": "yes"}]}, "rules[0].html"),
        ({"rules": [{"retry_after": "soon"}]}, "rules[0].retry_after"),
        ({"rules": [{"action": "explode"}]}, "rules[0].action"),
        ({"rules": [{}, {"bogus": 1}]}, "rules[1]"),
        ({"rules": [7]}, "rules[0]"),
        ({"rules": {"action": "drop"}}, "rules"),
        ({"rules": [], "replace": "yes"}, "replace"),
        ({"rules": [], "seed": "x"}, "seed"),
        ({"rulez": []}, "unknown fields"),
        ([], "JSON object"),
    ],
)
def test_ill_typed_fault_rules_are_refused_and_change_nothing(
    guarded: LocalRekor, body: Any, where: str
) -> None:
    before = httpx.get(guarded.url + "/_rekorkit/faults").json()
    # A valid rule before the bad one: nothing of the request may be applied.
    if isinstance(body, dict) and isinstance(body.get("rules"), list):
        body = dict(body, rules=[{"action": "status", "status": 503}, *body["rules"]])
        where = re.sub(r"rules\[(\d+)\]", lambda m: f"rules[{int(m[1]) + 1}]", where)
    r = httpx.post(guarded.url + "/_rekorkit/faults", json=body)
    assert r.status_code == 400, r.text
    assert where in r.json()["message"]
    assert httpx.get(guarded.url + "/_rekorkit/faults").json() == before
    assert httpx.get(guarded.url + "/checkpoint").status_code == 200


def test_fault_admin_refuses_deep_and_broken_json(guarded: LocalRekor) -> None:
    for raw in (b"[" * 60_000, b'{"a":' * 12_000, b"{'rules': []}", b"\xff"):
        for path in ("/_rekorkit/faults", "/_rekorkit/fork"):
            r = httpx.post(guarded.url + path, content=raw)
            assert r.status_code == 400 and r.json()["code"] == 400, (path, raw[:8])
    for path in ("/_rekorkit/faults", "/_rekorkit/fork"):
        r = httpx.post(guarded.url + path, content=b"[" * 100_000)
        assert r.status_code == 413 and r.json()["code"] == 413
    for body in ({"at": "3"}, {"extra": True}, {"readers": 1}, {"at": -1}, {"x": 1}):
        r = httpx.post(guarded.url + "/_rekorkit/fork", json=body)
        assert r.status_code == 400 and r.json()["message"], body
    assert httpx.get(guarded.url + "/_rekorkit/fork").json() == {"active": False}


def test_a_valid_fault_rule_still_applies(guarded: LocalRekor) -> None:
    guarded.set_faults({"action": "status", "status": 503, "count": 1, "path_prefix": "/api/"})
    try:
        assert httpx.get(guarded.url + "/api/v1/log").status_code == 503
        assert httpx.get(guarded.url + "/api/v1/log").status_code == 200
    finally:
        guarded.clear_faults()


# -- the banner --------------------------------------------------------------------------
def test_banner_is_printed_once_the_socket_accepts(tmp_path: Path) -> None:
    for attempt in range(2):
        cmd = [sys.executable, "-m", "rekorkit.cli", "serve", "--data", str(tmp_path / "log")]
        cmd += ["--port", "0", "--no-fsync"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.stdout is not None
            url = None
            for _ in range(100):  # the banner is about 20 lines
                line = proc.stdout.readline().decode()
                if not line:
                    break
                if line.startswith("listening on "):
                    url = line.split()[-1]
                    break
            assert url is not None, f"no banner (attempt {attempt})"
            host, port = url.removeprefix("http://").rsplit(":", 1)
            # Connect the instant the line appears: no retry, no refused connection.
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data, _ = _read_until_closed(s, time.monotonic() + 5)
            assert _status_and_json(data)[0] == 200
        finally:
            proc.terminate()
            proc.wait(timeout=15)


# -- the hostile sweep -------------------------------------------------------------------
_UUID = "ab" * 32
_PATHS = [
    "/",
    "/checkpoint",
    "/checkpoint/",
    "/healthz",
    "/api/v1/log",
    "/api/v1/log/entries",
    f"/api/v1/log/entries/{_UUID}",
    "/api/v1/log/entries/retrieve",
    "/api/v1/log/proof?firstSize=1&lastSize=99999999999999999999",
    "/api/v1/log/entries?logIndex=%EF%BC%91",
    "/api/v1/log/entries?logIndex=1&logIndex=x",
    "/api/v1/log/entries/../../../etc/passwd",
    "/api/v1/log/entries/%2e%2e%2f%2e%2e%2fkeys",
    "/api/v2/log/entries",
    "/tile/0/000",
    "/tile/../keys/ecdsa.pem",
    "/tile/entries/%2e%2e/%2e%2e/index.duckdb",
    "/tile/0/x001/000.p/0",
    "/tile/99/000",
    "/tile/0/" + "x999/" * 300 + "000",
    "/%00",
    "/%ff%fe%fd",
    "//etc//passwd",
    "/_rekorkit/faults",
    "/_rekorkit/fork",
    "/" + "a" * 8000,
]
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"[" * 20000,
    b'{"entryUUIDs":[' + b'"x",' * 100 + b'"x"]}',
    b'{"logIndexes":[1e400, -1, "2", null]}',
    b'{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":7}}}',
    b'{"rules":[{"path_prefix":5}]}',
    b"\xff\xfe\x00garbage",
    b'{"a":"\\ud800"}',
]


def _hostile_requests() -> list[tuple[str, bytes, bool]]:
    """(label, raw request, whether the server may have to wait for the deadline)."""
    out: list[tuple[str, bytes, bool]] = []
    for k, path in enumerate(_PATHS):
        for j, method in enumerate(_METHODS):
            body = _BODIES[(k + j) % len(_BODIES)]
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            out.append((f"{method} {path[:40]}", head.encode() + b"\r\n" + body, False))
    for path in ("/api/v1/log/entries", "/api/v2/log/entries", "/api/v1/log/entries/retrieve"):
        p = b"POST " + path.encode() + b" HTTP/1.1\r\n"
        g = b"GET " + path.encode()
        out += [
            ("truncated body", p + b"Content-Length: 500\r\n\r\n{}", True),
            (
                "10 GB body",
                p + b"Content-Length: 10737418240\r\n\r\n",
                True,
            ),
            (
                "bad chunk",
                p + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                False,
            ),
            (
                "TE and CL",
                p + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                False,
            ),
            (
                "two CLs",
                p + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
                False,
            ),
            ("negative CL", p + b"Content-Length: -5\r\n\r\n", False),
            ("NUL header", g + b" HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", False),
            ("no colon", g + b" HTTP/1.1\r\nNoColonHere\r\n\r\n", False),
            ("latin-1 path", g + b"\xe9\xff HTTP/1.1\r\n\r\n", False),
            ("space in path", b"GET /api v1 HTTP/1.1\r\n\r\n", False),
            ("HTTP/1.0", g + b" HTTP/1.0\r\n\r\n", False),
            ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
            ("binary", bytes(range(256)) * 4, False),
            ("lone LF", g + b"\n\n", False),
            ("unknown method", b"BREW " + path.encode() + b" HTTP/1.1\r\n\r\n", False),
            (
                "expect",
                p + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                True,
            ),
        ]
    return out


async def _one(addr: tuple[str, int], raw: bytes, limit: float) -> tuple[bytes, bool]:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(raw)
        await writer.drain()
        data = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit)
            if not chunk:
                return data, True
            data += chunk
            if b"connection: close" not in data.lower() and _complete(data):
                return data, True
    except (ConnectionResetError, BrokenPipeError):
        return b"", True
    except TimeoutError:
        return b"", False
    finally:
        writer.close()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def test_hostile_sweep_gets_no_5xx_and_no_hang(guarded: LocalRekor) -> None:
    requests = _hostile_requests()
    assert len(requests) > 250
    addr = _addr(guarded)

    async def sweep() -> list[tuple[bytes, bool]]:
        return await asyncio.gather(*(_one(addr, raw, TIMEOUT + 5) for _, raw, _ in requests))

    start = time.monotonic()
    results = asyncio.run(sweep())
    elapsed = time.monotonic() - start
    statuses: dict[int, int] = {}
    for (label, raw, _), (data, ended) in zip(requests, results, strict=True):
        assert ended, f"no answer and no close: {label}"
        if not data:
            continue  # the server closed (reset) without answering: allowed, not a hang
        status, _, _ = data.partition(b"\r\n")[0].partition(b" ")[2].partition(b" ")
        code = int(status)
        statuses[code] = statuses.get(code, 0) + 1
        assert code < 500, f"{label}: {data[:300]!r}"
        if code >= 400 and not raw.startswith(b"HEAD"):
            body = data.partition(b"\r\n\r\n")[2]
            empty_404 = code == 404 and b"/api/v1/log/entries" in raw.split(b"\r\n")[0]
            if not empty_404:
                err = json.loads(body)
                assert isinstance(err["code"], int) and err["message"], f"{label}: {body[:200]!r}"
    assert elapsed < TIMEOUT + 10
    assert httpx.get(guarded.url + "/healthz").status_code == 200
    print(f"sweep: {len(requests)} requests in {elapsed:.2f}s, statuses {sorted(statuses.items())}")


# -- layout --------------------------------------------------------------------------------
def test_server_modules_import_no_cycle() -> None:
    """Routes import the service, not the app: no cycle, type-checking imports included."""
    import ast

    import rekorkit.server

    package = Path(rekorkit.server.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                deps |= {n.split(".")[2] for n in names if n.startswith("rekorkit.server.")}
        graph[path.stem] = deps - {path.stem}
    graph.pop("__init__")

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [m for m in graph if reaches(m, m, {m})]
    assert cycles == []
    assert "app" not in graph["v1"] | graph["v2"] and "service" in graph["v1"] & graph["v2"]
