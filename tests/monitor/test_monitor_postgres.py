"""The monitor's alert store on a real PostgreSQL: deduplication across monitors, the
outbox, acknowledgements, watch progress, and sightings/frontiers of the shared store."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
from concurrently import in_threads
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit.monitor import Alert, AlertKind, CallbackPublisher, Dispatcher
from rekorkit.monitor.postgres_alerts import PostgresAlertStore
from rekorkit.store.postgres import PostgresStore


def _alert(n: int) -> Alert:
    return Alert.make(
        AlertKind.WATCH_MATCH, "log", "origin", f"match {n}", {"n": n, "h": b"\x01"}, identity=(n,)
    )


def test_alerts_are_deduplicated_and_survive_reopening(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        alerts = PostgresAlertStore(store)
        assert alerts.add([_alert(1), _alert(2), _alert(1)]) == 2
        assert alerts.add([_alert(2)], matched=("origin", 10)) == 0
        assert alerts.add([], matched=("origin", 7)) == 0  # progress never moves back
    with PostgresStore(pg_url) as store:
        alerts = PostgresAlertStore(store)
        stored = alerts.alerts()
        assert [a.alert.evidence["n"] for a in stored] == [1, 2]
        assert stored[0].alert.evidence["h"] == "01" and stored[0].alert == _alert(1)
        assert alerts.alerts(AlertKind.ROLLBACK) == []
        assert alerts.matched_to("origin") == 10 and alerts.matched_to("other") == 0
        assert [a.seq for a in alerts.pending("p")] == [s.seq for s in stored]


def test_outbox_delivers_once_per_publisher_and_skips_acknowledged(pg_url: str) -> None:
    got: list[dict[str, Any]] = []
    failing_calls: list[str] = []

    def failing(doc: dict[str, Any]) -> None:
        failing_calls.append(doc["id"])
        raise RuntimeError("receiver down")

    with PostgresStore(pg_url) as store:
        alerts = PostgresAlertStore(store)
        alerts.add([_alert(1), _alert(2), _alert(3)])
        alerts.acknowledge(_alert(3).key, "known")
        assert alerts.acknowledged() == {_alert(3).key}
        d = Dispatcher(
            alerts,  # type: ignore[arg-type]  (the same methods as AlertStore)
            [CallbackPublisher(got.append, name="ok"), CallbackPublisher(failing, name="down")],
        )
        assert asyncio.run(d.deliver()) == 2
        assert asyncio.run(d.deliver()) == 0
        assert [g["evidence"]["n"] for g in got] == [1, 2]
        assert len(failing_calls) == 2
        seq = alerts.alerts()[0].seq
        assert alerts.deliveries(seq)["down"][:2] == (False, 2)
        assert alerts.deliveries(seq)["ok"][:2] == (True, 1)


def test_two_monitors_finding_the_same_things_store_each_alert_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(2)]
    alert_stores = [PostgresAlertStore(s) for s in stores]
    barrier = threading.Barrier(2)
    added = [0, 0]

    def monitor(k: int) -> None:
        barrier.wait()
        for start in range(0, 60, 6):  # overlapping batches, in opposite orders
            batch = [_alert(n) for n in range(start, start + 12)]
            added[k] += alert_stores[k].add(batch if k else batch[::-1], matched=("origin", start))

    in_threads(monitor, range(2))
    assert sum(added) == 66  # alerts 0..65, each counted by exactly one monitor
    stored = alert_stores[0].alerts()
    assert sorted(a.alert.evidence["n"] for a in stored) == list(range(66))
    assert alert_stores[1].matched_to("origin") == 54
    with psycopg.connect(pg_url) as con:
        row = con.execute("SELECT count(*), count(DISTINCT key) FROM monitor_alerts").fetchone()
    assert row == (66, 66)
    for s in stores:
        s.close()
