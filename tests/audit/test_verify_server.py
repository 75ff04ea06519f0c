"""``rekorkit verify`` against the project's own log server (``rekorkit serve``) on loopback.

v2 tiles and v1 REST ranges, network faults retried by the client policy, an
interrupted run resumed, and the server's fork mode caught as a divergence.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit.cli import main
from rekorkit.errors import CheckpointError, InclusionError, SignatureError, VerificationError
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import LocalRekor, start_server

SEEDED = 1500


@pytest.fixture
def srv() -> Iterator[LocalRekor]:
    with start_server(seed=SEEDED, fsync=False) as s:
        yield s


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    status = main(["verify", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_v2_and_v1_ranges_verify(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.duckdb")
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0, report
    assert report["api"] == "v2" and report["entries"] == SEEDED and report["origin"] == srv.origin
    status, report = verify(
        capsys,
        srv.url,
        "--api",
        "v1",
        "--key",
        srv.v1_vkey,
        "--db",
        db,
        "--from",
        "100",
        "--to",
        "160",
    )
    assert status == 0, report
    assert report["api"] == "v1" and report["entries"] == 60
    with DuckDBStore(db, read_only=True) as store:
        assert store.count(srv.origin) == SEEDED
        assert store.count(srv.v1_origin) == 60
        e = store.entry(srv.v1_origin, 120)
        v2 = store.entry(srv.origin, 120)
        assert e is not None and v2 is not None
        assert e.body == v2.body and e.leaf_hash == v2.leaf_hash  # the same log through both APIs
        assert e.integrated_time is not None and e.global_index == 120
        assert e.kind in {"dsse", "hashedrekord"}


def test_faults_are_retried(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.set_faults(
        {"action": "status", "status": 503, "count": 3, "path_prefix": "/tile/entries/"},
        {
            "action": "status",
            "status": 429,
            "count": 1,
            "retry_after": 0,
            "path_prefix": "/tile/0/",
        },
        {"action": "truncate", "count": 1, "path_prefix": "/tile/entries/001"},
    )
    status, report = verify(
        capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", str(tmp_path / "f.duckdb")
    )
    assert status == 0, report
    assert report["entries"] == SEEDED


def test_interrupted_run_resumes(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "r.duckdb")
    srv.set_faults({"action": "status", "status": 500, "path_prefix": "/tile/entries/003"})
    status, report = verify(
        capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db, "--concurrency", "1"
    )
    assert status == 2 and report["error"] == "network error"
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, 768)]  # bundles 0-2 verified and kept
    srv.clear_faults()
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0 and report["range"] == [768, SEEDED]
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, SEEDED)]


def test_fork_mode_is_a_divergence(
    tmp_path: Path, srv: LocalRekor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "k.duckdb")
    status, _ = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 0
    srv.fork(at=SEEDED - 200, extra=300)
    status, report = verify(capsys, srv.url, "--key", srv.checkpoint_vkey, "--db", db)
    assert status == 1 and report["type"] == "DivergenceError", report
    assert report["evidence"]["old_size"] == SEEDED
    with DuckDBStore(db) as store:
        assert store.verified_ranges(srv.origin) == [(0, SEEDED)]
        assert [c.size for c in store.checkpoints(srv.origin)] == [SEEDED]


def _tamper(edit: Callable[[dict[str, Any]], None]) -> Shuffle:
    """Edits entry 42 in search responses (what a lying v1 log could send)."""

    def apply(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in body:
            for entry in item.values():
                if entry.get("logIndex") == 42:
                    edit(entry)
        return body

    return Shuffle(apply)


def _v1(
    srv: LocalRekor, edit: Callable[[dict[str, Any]], None], db: Path
) -> tuple[BaseException, DuckDBStore]:
    from rekorkit.audit.v1log import verify_v1_log
    from rekorkit.client.v1 import AsyncRekorV1Client
    from rekorkit.client.verification import VerifyOptions
    from rekorkit.note import parse_verifier_key

    store = DuckDBStore(db)

    async def go() -> None:
        async with AsyncRekorV1Client(
            srv.url, verify=VerifyOptions.none(), transport=_tamper(edit)
        ) as client:
            await verify_v1_log(
                srv.url,
                parse_verifier_key(srv.v1_vkey),
                store=store,
                end=100,
                window=20,
                client=client,
            )

    with pytest.raises(VerificationError) as info:
        asyncio.run(go())
    return info.value, store


def test_v1_bad_inclusion_proof(tmp_path: Path, srv: LocalRekor) -> None:
    def edit(entry: dict[str, Any]) -> None:
        hashes = entry["verification"]["inclusionProof"]["hashes"]
        hashes[0] = "00" * 32

    err, store = _v1(srv, edit, tmp_path / "i.duckdb")
    assert isinstance(err, InclusionError) and err.evidence["entry_index"] == 42
    assert store.verified_ranges(srv.v1_origin) == [(0, 40)]  # windows before the bad one
    store.close()


def test_v1_bad_set_and_body(tmp_path: Path, srv: LocalRekor) -> None:
    def bad_set(entry: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(entry["verification"]["signedEntryTimestamp"]))
        sig[-1] ^= 1
        entry["verification"]["signedEntryTimestamp"] = base64.b64encode(bytes(sig)).decode()

    err, store = _v1(srv, bad_set, tmp_path / "s.duckdb")
    assert isinstance(err, SignatureError) and err.evidence["entry_index"] == 42
    store.close()

    def bad_body(entry: dict[str, Any]) -> None:
        entry["body"] = base64.b64encode(b'{"forged":true}').decode()

    err, store = _v1(srv, bad_body, tmp_path / "b.duckdb")
    assert isinstance(err, InclusionError) and err.evidence["entry_index"] == 42
    assert store.count(srv.v1_origin) == 40
    store.close()


def test_v1_foreign_log_id_and_missing_checkpoint(tmp_path: Path, srv: LocalRekor) -> None:
    def foreign(entry: dict[str, Any]) -> None:
        entry["logID"] = "ab" * 32

    err, store = _v1(srv, foreign, tmp_path / "l.duckdb")
    assert isinstance(err, SignatureError) and err.evidence["entry_index"] == 42
    assert "logID" in str(err)
    store.close()

    def no_checkpoint(entry: dict[str, Any]) -> None:
        del entry["verification"]["inclusionProof"]["checkpoint"]

    err, store = _v1(srv, no_checkpoint, tmp_path / "c.duckdb")
    assert isinstance(err, CheckpointError) and err.evidence["entry_index"] >= 40
    store.close()


class Shuffle(httpx.AsyncHTTPTransport):
    """Forwards to the real server and rewrites every search answer (default: hits reversed)."""

    def __init__(
        self, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda e: e[::-1]
    ):
        super().__init__()
        self.edit = edit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not request.url.path.endswith("/entries/retrieve"):
            return response
        body = self.edit(json.loads(await response.aread()))
        return httpx.Response(response.status_code, json=body)


async def _v1_run(
    srv: LocalRekor, transport: httpx.AsyncBaseTransport, store: DuckDBStore | None, **kw: Any
) -> Any:
    from rekorkit.audit.v1log import verify_v1_log
    from rekorkit.client.v1 import AsyncRekorV1Client
    from rekorkit.client.verification import VerifyOptions
    from rekorkit.note import parse_verifier_key

    async with AsyncRekorV1Client(
        srv.url, verify=VerifyOptions.none(), transport=transport
    ) as client:
        return await verify_v1_log(
            srv.url, parse_verifier_key(srv.v1_vkey), store=store, client=client, **kw
        )


def test_v1_hits_in_any_order_are_placed_by_index(tmp_path: Path, srv: LocalRekor) -> None:
    report = asyncio.run(_v1_run(srv, Shuffle(), None, start=5, end=77, window=16))
    assert report.entries == 72


def test_v1_read_failure_keeps_the_windows_before(tmp_path: Path, srv: LocalRekor) -> None:
    from rekorkit.errors import NotFoundError

    def drop_late(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in entries if next(iter(e.values()))["logIndex"] < 65]

    store = DuckDBStore(tmp_path / "f.duckdb")
    # Both requests of the window [60, 80) miss entries (65-69, 70-79); either may fail first.
    with pytest.raises(NotFoundError, match=r"no entries at indices \[(6[5-9]|7\d)"):
        asyncio.run(_v1_run(srv, Shuffle(drop_late), store, end=100, window=20))
    assert store.verified_ranges(srv.v1_origin) == [(0, 60)]
    store.close()


def test_v1_gaps_are_filled_and_stored_in_order(tmp_path: Path, srv: LocalRekor) -> None:
    store = DuckDBStore(tmp_path / "g.duckdb")
    asyncio.run(_v1_run(srv, Shuffle(lambda e: e), store, start=0, end=100, window=20))
    asyncio.run(_v1_run(srv, Shuffle(lambda e: e), store, start=150, end=200, window=20))
    assert store.verified_ranges(srv.v1_origin) == [(0, 100), (150, 200)]
    # Two gaps in one run: windows of each are gathered, never across the stored part.
    report = asyncio.run(_v1_run(srv, Shuffle(lambda e: e), store, start=0, end=330, window=16))
    assert report.entries == 180 and report.stored == 180
    assert store.verified_ranges(srv.v1_origin) == [(0, 330)]
    assert store.count(srv.v1_origin) == 330
    store.close()
