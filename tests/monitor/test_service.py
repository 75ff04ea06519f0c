"""RekorSyncService against the real local log: sync, divergence, faults."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from monitor_support import config, submit_signed
from rekorkit import merkle, tiles
from rekorkit.checkpoint import open_checkpoint
from rekorkit.errors import ConsistencyError
from rekorkit.monitor import (
    AlertKind,
    CallbackPublisher,
    LogConfig,
    MonitorConfig,
    RekorSyncService,
    Vantage,
)
from rekorkit.note import parse_verifier_key
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.testing import start_server


def _run(cfg: MonitorConfig, *steps: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Run the service for one round per step (a callable run before it); alerts delivered."""
    delivered: list[dict[str, Any]] = []
    statuses: list[Any] = []

    async def go() -> None:
        svc = RekorSyncService(cfg, publishers=[CallbackPublisher(delivered.append)])
        try:
            for step in steps:
                if step is not None:
                    step()
                statuses.append({k: v.to_json() for k, v in (await svc.sync_once()).items()})
        finally:
            await svc.stop()

    asyncio.run(go())
    return delivered, statuses


def _recheck_fork_offline(alert: dict[str, Any], vkey: str) -> None:
    """What a third party does with a fork alert: both notes verify, the tiles
    hash to the new root, and no proof from them rebuilds the old root."""
    ev = alert["evidence"]
    verifier = parse_verifier_key(vkey)
    old = open_checkpoint(ev["old"], verifier)
    new = open_checkpoint(ev["new"], verifier)
    assert (old.size, new.size) == (ev["old_size"], ev["new_size"])
    served = {p: bytes.fromhex(h) for p, h in ev["tiles"].items()}

    def read(level: int, index: int, width: int) -> bytes:
        return served[tiles.TileID(level, index, width).path]

    builder = tiles.ProofBuilder(new.size, read)
    assert builder.root() == new.root
    proof = builder.consistency_proof(old.size)
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except ConsistencyError:
        return
    raise AssertionError("the evidence does not show a fork")


def test_sync_stores_every_entry_and_advances_frontier(tmp_path: Path) -> None:
    with start_server(seed=1500) as srv:
        db = tmp_path / "m.duckdb"
        added: list[tuple[int, str]] = []
        alerts, statuses = _run(
            config(srv, db), None, lambda: added.extend(submit_signed(srv, 3)), None
        )
        assert alerts == []
        assert [s["local"]["size"] for s in statuses] == [1500, 1503, 1503]
        assert all(s["local"]["failures"] == 0 for s in statuses)
    with DuckDBStore(db, read_only=True) as store:
        assert store.verified_ranges(srv.origin) == [(0, 1503)]
        start, cp = store.frontier(srv.origin) or (None, None)
        assert (start, cp and cp.size) == (0, 1503)
        assert [c.size for c in store.checkpoints(srv.origin)] == [1500, 1503]
        entry = store.entry(srv.origin, added[0][0])
        assert entry is not None and added[0][1].encode() in entry.body
        assert {s[2] for s in store.sightings(srv.origin)} == {srv.url}


def test_start_at_head_syncs_only_new_entries(tmp_path: Path) -> None:
    with start_server(seed=800) as srv:
        cfg = config(srv, tmp_path / "m.duckdb", start=None)
        _run(cfg, None, lambda: submit_signed(srv, 2))
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(srv.origin) == [(800, 802)]
        assert (store.frontier(srv.origin) or (0,))[0] == 800


def test_rewritten_history_alert_carries_offline_evidence(tmp_path: Path) -> None:
    with start_server(seed=1200) as srv:
        alerts, statuses = _run(
            config(srv, tmp_path / "m.duckdb"), None, lambda: srv.fork(at=700, extra=600), None
        )
    assert [a["kind"] for a in alerts] == [AlertKind.REWRITTEN_HISTORY.value]  # once, not twice
    assert (alerts[0]["evidence"]["old_size"], alerts[0]["evidence"]["new_size"]) == (1200, 1300)
    _recheck_fork_offline(alerts[0], srv.checkpoint_vkey)
    assert statuses[-1]["local"]["frontier"] == 1200  # not advanced past the fork
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(srv.origin) == [(0, 1200)]
        assert (store.frontier(srv.origin) or (0, None))[1].size == 1200  # type: ignore[union-attr]


def test_split_view_seen_from_a_second_vantage_point(tmp_path: Path) -> None:
    with start_server(seed=1000) as srv:
        mirror = Vantage("fork-reader", srv.url, {"x-rekorkit-view": "fork"})
        cfg = config(srv, tmp_path / "m.duckdb", vantage=(mirror,))
        alerts, _ = _run(cfg, None, lambda: srv.fork(at=400, extra=700, readers="header"))
    assert [a["kind"] for a in alerts] == [AlertKind.SPLIT_VIEW.value]
    _recheck_fork_offline(alerts[0], srv.checkpoint_vkey)


def test_same_size_other_root(tmp_path: Path) -> None:
    with start_server(seed=600) as srv:
        cfg = config(srv, tmp_path / "m.duckdb")
        alerts, _ = _run(cfg, None, lambda: srv.fork(at=500, extra=100))
    assert [a["kind"] for a in alerts] == [AlertKind.SAME_SIZE_OTHER_ROOT.value]
    ev = alerts[0]["evidence"]
    assert ev["old_size"] == ev["new_size"] == 600 and ev["old_root"] != ev["new_root"]


def test_rollback_to_an_older_copy_of_the_log(tmp_path: Path) -> None:
    data = tmp_path / "log"
    with start_server(data, seed=500):
        pass
    shutil.copytree(data, tmp_path / "old")
    db = tmp_path / "m.duckdb"
    with start_server(data) as srv:
        submit_signed(srv, 4)
        _run(config(srv, db), None)
    with start_server(tmp_path / "old") as old:
        alerts, statuses = _run(config(old, db), None)
    assert [a["kind"] for a in alerts] == [AlertKind.ROLLBACK.value]
    ev = alerts[0]["evidence"]
    assert (ev["old_size"], ev["new_size"]) == (504, 500)
    verifier = parse_verifier_key(srv.checkpoint_vkey)
    assert open_checkpoint(ev["old"], verifier).size == 504
    assert open_checkpoint(ev["new"], verifier).size == 500
    assert statuses[0]["local"]["frontier"] == 0  # nothing advanced from the rolled-back log


def test_wrong_signer_is_an_alert_and_nothing_is_stored(tmp_path: Path) -> None:
    with start_server(seed=50) as srv, start_server() as other:
        cfg = config(srv, tmp_path / "m.duckdb")
        wrong = LogConfig("local", srv.url, other.checkpoint_vkey)  # same name, other key
        alerts, _ = _run(MonitorConfig(cfg.db, (wrong,)), None, None)
    assert [a["kind"] for a in alerts] == [AlertKind.ENTRY_VERIFICATION.value]
    assert alerts[0]["evidence"]["error"] == "SignatureError"
    assert "note" in alerts[0]["evidence"]
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.count() == 0


def test_tampered_bundle_alerts_and_keeps_the_verified_prefix(tmp_path: Path) -> None:
    data = tmp_path / "log"
    with start_server(data, seed=1024):
        pass
    bundle = data / "tiles" / tiles.entries_path(2)
    raw = bytearray(bundle.read_bytes())
    raw[100] ^= 0x01
    bundle.write_bytes(bytes(raw))
    with start_server(data) as srv:
        alerts, _ = _run(config(srv, tmp_path / "m.duckdb"), None, None)
    assert [a["kind"] for a in alerts] == [AlertKind.ENTRY_VERIFICATION.value]
    assert alerts[0]["evidence"]["error"] == "TileError"
    assert 512 <= alerts[0]["evidence"]["entry_index"] < 768
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(srv.origin) == [(0, 512)]
        assert store.frontier(srv.origin) is None


def test_stalled_log_alerts_once(tmp_path: Path) -> None:
    with start_server(seed=10) as srv:
        cfg = config(srv, tmp_path / "m.duckdb", stale_after=0.3)
        alerts, _ = _run(cfg, None, lambda: time.sleep(0.5), lambda: time.sleep(0.1))
    assert [a["kind"] for a in alerts] == [AlertKind.STALE_LOG.value]
    assert alerts[0]["evidence"]["size"] == 10


def test_failing_log_alerts_and_the_other_log_keeps_running(tmp_path: Path) -> None:
    with start_server(seed=300) as good, start_server(seed=10) as bad:
        bad.set_faults({"action": "status", "status": 503, "path_prefix": "/checkpoint"})
        slow = {"action": "latency", "latency": 2.0, "path_prefix": "/checkpoint"}
        logs = (
            LogConfig("good", good.url, good.checkpoint_vkey),
            LogConfig("bad", bad.url, bad.checkpoint_vkey, error_alert_after=2, timeout=1.0),
        )
        cfg = MonitorConfig(str(tmp_path / "m.duckdb"), logs)
        alerts, statuses = _run(cfg, None, lambda: bad.set_faults(slow), None)
    assert [a["kind"] for a in alerts] == [AlertKind.LOG_ERROR.value]  # one per outage
    assert alerts[0]["log"] == "bad" and alerts[0]["evidence"]["failures"] == 2
    assert [s["bad"]["failures"] for s in statuses] == [1, 2, 3]
    assert [s["good"]["frontier"] for s in statuses] == [300, 300, 300]


def test_v1_log_is_synced_through_the_rest_api(tmp_path: Path) -> None:
    with start_server(seed=400) as srv:
        cfg = MonitorConfig(
            str(tmp_path / "m.duckdb"), (LogConfig("v1", srv.url, srv.v1_vkey, api="v1"),)
        )
        alerts, statuses = _run(cfg, None, lambda: submit_signed(srv, 2), None)
    assert alerts == []
    assert [s["v1"]["frontier"] for s in statuses] == [400, 402, 402]
    with DuckDBStore(tmp_path / "m.duckdb", read_only=True) as store:
        assert store.verified_ranges(srv.v1_origin) == [(0, 402)]
        assert (store.frontier(srv.v1_origin) or (0, None))[1].size == 402  # type: ignore[union-attr]


def test_service_in_an_application_follows_new_entries(tmp_path: Path) -> None:
    """start()/stop() inside a user's asyncio app: new entries arrive within a poll."""
    with start_server(seed=100) as srv:
        cfg = config(srv, tmp_path / "m.duckdb", poll_interval=0.1)

        async def app() -> int:
            async with RekorSyncService(cfg) as svc:
                await asyncio.to_thread(submit_signed, srv, 2)
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if svc.followers[0].status.frontier == 102:
                        break
                return svc.followers[0].status.frontier

        assert asyncio.run(app()) == 102
