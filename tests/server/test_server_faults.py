"""Fault injection and fork mode of the local log server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from rekorkit.checkpoint import open_checkpoint
from rekorkit.errors import ConsistencyError
from rekorkit.merkle import verify_consistency
from rekorkit.note import parse_verifier_key
from rekorkit.server.faults import FaultController, FaultRule, is_loopback
from rekorkit.testing import LocalRekor, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
    srv = start_server(tmp_path_factory.mktemp("faults"), seed=600)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(server: LocalRekor) -> Iterator[None]:
    server.clear_faults()
    yield
    server.clear_faults()


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_fail_next_n_then_recover(server: LocalRekor, status: int) -> None:
    server.set_faults(
        {"status": status, "count": 2, "retry_after": 3, "path_prefix": "/checkpoint"}
    )
    with httpx.Client(base_url=server.url) as c:
        first, second, third = (c.get("/checkpoint") for _ in range(3))
    assert first.status_code == second.status_code == status
    assert first.headers["retry-after"] == "3"
    assert third.status_code == 200
    if status in (429, 502):
        assert first.headers["content-type"].startswith("text/html")  # nginx-style edge page
    else:
        assert first.json()["code"] == status


def test_path_filter_leaves_other_paths_alone(server: LocalRekor) -> None:
    server.set_faults({"status": 503, "path_prefix": "/api/v2/"})
    assert httpx.get(server.url + "/checkpoint").status_code == 200
    assert httpx.post(server.url + "/api/v2/log/entries", json={}).status_code == 503
    assert httpx.get(server.url + "/healthz").status_code == 200  # never faulted


def test_fraction_is_reproducible(server: LocalRekor) -> None:
    def run() -> list[int]:
        server.set_faults({"status": 500, "fraction": 0.5, "path_prefix": "/tile/"}, seed=7)
        with httpx.Client(base_url=server.url) as c:
            return [c.get("/tile/0/000").status_code for _ in range(40)]

    a, b = run(), run()
    assert a == b
    assert 5 < a.count(500) < 35 and a.count(200) == 40 - a.count(500)


def test_latency(server: LocalRekor) -> None:
    server.set_faults({"action": "latency", "latency": 0.3, "count": 1})
    t = time.monotonic()
    assert httpx.get(server.url + "/checkpoint").status_code == 200
    assert time.monotonic() - t >= 0.3


def test_dropped_connection_and_truncated_body(server: LocalRekor) -> None:
    server.set_faults({"action": "drop", "count": 1})
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/tile/0/000")
    server.set_faults({"action": "truncate", "count": 1})
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/tile/0/000")
    assert len(httpx.get(server.url + "/tile/0/000").content) == 8192


def test_admin_validates_rules(server: LocalRekor) -> None:
    for rule in ({"action": "explode"}, {"status": 418}, {"fraction": 2}, {"bogus": 1}):
        r = httpx.post(server.url + "/_rekorkit/faults", json={"rules": [rule]})
        assert r.status_code == 400 and r.json()["message"]
    assert httpx.get(server.url + "/_rekorkit/faults").json()["rules"] == []


def test_controller_counts_and_loopback() -> None:
    c = FaultController(seed=1)
    c.set_rules([FaultRule(status=503, count=1), FaultRule(action="latency", latency=0.1)])
    assert [r.action for r in c.pick("GET", "/x")] == ["status"]
    assert [r.action for r in c.pick("GET", "/x")] == ["latency"]
    assert c.snapshot()["injected"] == 2
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("10.0.0.1")


def test_faults_disabled_without_flag(tmp_path: object) -> None:
    with start_server(faults=False) as srv:
        assert httpx.get(srv.url + "/_rekorkit/faults").status_code == 404


def _open(server: LocalRekor, data: bytes) -> tuple[int, bytes]:
    cp = open_checkpoint(data, parse_verifier_key(server.checkpoint_vkey), origin=server.origin)
    return cp.checkpoint.size, cp.checkpoint.root


def test_fork_rewritten_history_is_signed_but_inconsistent(server: LocalRekor) -> None:
    real_size, real_root = _open(server, httpx.get(server.url + "/checkpoint").content)
    info = server.fork(at=real_size - 100, extra=150)
    assert info["active"] and info["size"] == real_size + 50
    fork_size, fork_root = _open(server, httpx.get(server.url + "/checkpoint").content)
    assert fork_size == real_size + 50  # validly signed by the log's own key
    # The fork serves a consistency proof for its own tree; it cannot join the real head.
    proof = httpx.get(
        server.url + "/api/v1/log/proof", params={"firstSize": real_size, "lastSize": fork_size}
    ).json()
    with pytest.raises(ConsistencyError):
        verify_consistency(
            real_size, fork_size, real_root, fork_root, [bytes.fromhex(h) for h in proof["hashes"]]
        )
    # The fork's tiles hash to its checkpoint; the shared prefix is the real one.
    assert httpx.get(server.url + "/tile/0/000").content == _real_tile(server)
    v1 = httpx.get(server.url + "/api/v1/log").json()
    assert v1["treeSize"] == fork_size and v1["rootHash"] == fork_root.hex()
    server.unfork()
    assert _open(server, httpx.get(server.url + "/checkpoint").content) == (real_size, real_root)


def _real_tile(server: LocalRekor) -> bytes:
    return (server.data_dir / "tiles" / "tile" / "0" / "000").read_bytes()


def test_fork_split_view_by_header(server: LocalRekor) -> None:
    real = httpx.get(server.url + "/checkpoint").content
    server.fork(extra=3, readers="header")
    plain = httpx.get(server.url + "/checkpoint").content
    forked = httpx.get(server.url + "/checkpoint", headers={"x-rekorkit-view": "fork"}).content
    assert plain == real
    size_real, root_real = _open(server, plain)
    size_fork, root_fork = _open(server, forked)
    assert size_fork == size_real + 3 and root_fork != root_real
    bundle = httpx.get(
        server.url + f"/tile/entries/{(size_fork - 1) // 256:03d}.p/{size_fork % 256}",
        headers={"x-rekorkit-view": "fork"},
    )
    assert bundle.status_code == 200 and b"forged" in bundle.content


def test_fork_rejects_bad_parameters(server: LocalRekor) -> None:
    for body in ({"at": 10**9}, {"extra": 0}, {"readers": "some"}, {"at": "x"}):
        r = httpx.post(server.url + "/_rekorkit/fork", json=body)
        assert r.status_code == 400, body
    assert httpx.get(server.url + "/_rekorkit/fork").json() == {"active": False}
