"""Delivery claims: dispatchers sharing one outbox send every alert once, on DuckDB and on
PostgreSQL, and the claims of a dispatcher killed mid-delivery lapse after its lease."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from concurrently import in_threads
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit.monitor import Alert, AlertKind, AlertStore, CallbackPublisher, Dispatcher
from rekorkit.monitor.postgres_alerts import PostgresAlertStore
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.store.postgres import PostgresStore


def _alerts(n: int) -> list[Alert]:
    return [
        Alert.make(AlertKind.WATCH_MATCH, "log", "o", f"match {i}", {"i": i}, identity=(i,))
        for i in range(n)
    ]


class _Receiver:
    """Counts deliveries per alert id, yielding between them so dispatchers interleave."""

    def __init__(self) -> None:
        self.got: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, doc: dict[str, Any]) -> None:
        await asyncio.sleep(0.001)
        with self._lock:
            self.got[doc["id"]] += 1


def test_claims_exclude_other_owners_until_released_or_lapsed(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "m.duckdb") as store:
        alerts = AlertStore(store)
        alerts.add(_alerts(3))
        mine = alerts.claim("hook", owner="a", lease=60)
        assert [a.alert.evidence["i"] for a in mine] == [0, 1, 2]
        assert alerts.claim("hook", owner="b", lease=60) == []
        assert len(alerts.claim("other", owner="b", lease=60)) == 3  # claims are per publisher
        alerts.release([mine[1].seq], "hook", owner="b")  # not b's claim: nothing changes
        assert alerts.claim("hook", owner="b", lease=60) == []
        alerts.release([mine[1].seq], "hook", owner="a")
        assert [a.seq for a in alerts.claim("hook", owner="b", lease=0.2)] == [mine[1].seq]
        # a's claim lapses only when its lease does; then b takes it over, and a's late
        # failure report does not free b's claim for a third dispatcher.
        alerts.mark_delivered(mine[0].seq, "hook", owner="a")
        time.sleep(0.3)
        taken = alerts.claim("hook", owner="c", lease=60)
        assert [a.seq for a in taken] == [mine[1].seq]  # b's short lease lapsed; [0] delivered
        alerts.mark_failed(mine[1].seq, "hook", "late", owner="b")
        assert alerts.claim("hook", owner="d", lease=60) == []
        assert alerts.deliveries(mine[0].seq)["hook"][:2] == (True, 1)
        assert alerts.deliveries(mine[1].seq)["hook"] == (False, 1, "late")


def test_two_dispatchers_on_one_duckdb_outbox_deliver_each_alert_once(tmp_path: Path) -> None:
    receiver = _Receiver()
    with DuckDBStore(tmp_path / "m.duckdb") as store:
        alerts = AlertStore(store)
        alerts.add(_alerts(120))
        pair = [Dispatcher(alerts, [CallbackPublisher(receiver, name="hook")]) for _ in range(2)]

        async def both() -> list[int]:
            return list(await asyncio.gather(*(d.deliver() for d in pair)))

        counts = asyncio.run(both())
        assert sum(counts) == 120 and min(counts) > 0  # both took part
        assert len(receiver.got) == 120 and set(receiver.got.values()) == {1}
        assert alerts.pending("hook") == []


def test_two_monitors_on_one_postgres_outbox_deliver_each_alert_once(pg_url: str) -> None:
    receiver = _Receiver()
    stores = [PostgresStore(pg_url) for _ in range(2)]
    outboxes = [PostgresAlertStore(s) for s in stores]
    outboxes[0].add(_alerts(200))
    counts = [0, 0]
    barrier = threading.Barrier(2)

    def monitor(k: int) -> None:
        d = Dispatcher(outboxes[k], [CallbackPublisher(receiver, name="hook")], batch=8)
        barrier.wait()
        counts[k] = asyncio.run(d.deliver())

    in_threads(monitor, range(2))
    assert sum(counts) == 200
    assert len(receiver.got) == 200 and set(receiver.got.values()) == {1}
    assert outboxes[1].pending("hook") == []
    assert {outboxes[1].deliveries(a.seq)["hook"][:2] for a in outboxes[1].alerts()} == {(True, 1)}
    for s in stores:
        s.close()


# A monitor's dispatcher whose receiver never answers: it claims, starts to deliver, hangs.
_HANGING = """
import asyncio, sys
from rekorkit.monitor import CallbackPublisher, Dispatcher
from rekorkit.monitor.postgres_alerts import PostgresAlertStore
from rekorkit.store.postgres import PostgresStore

async def hang(doc):
    print("delivering", doc["id"], flush=True)
    await asyncio.sleep(3600)

alerts = PostgresAlertStore(PostgresStore(sys.argv[1]))
pub = CallbackPublisher(hang, name="hook")
asyncio.run(Dispatcher(alerts, [pub], lease=float(sys.argv[2])).deliver())
"""


def test_monitor_killed_mid_delivery_leaves_it_to_another_after_the_lease(pg_url: str) -> None:
    lease = 3.0
    receiver = _Receiver()
    with PostgresStore(pg_url) as store:
        alerts = PostgresAlertStore(store)
        alerts.add(_alerts(5))
        proc = subprocess.Popen(
            [sys.executable, "-c", _HANGING, pg_url, str(lease)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # bounded: the process delivers or dies
            assert line.startswith("delivering"), proc.stderr.read() if proc.stderr else ""
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            proc.kill()
            proc.wait(timeout=10)
        other = Dispatcher(alerts, [CallbackPublisher(receiver, name="hook")], lease=lease)
        assert asyncio.run(other.deliver()) == 0  # the dead monitor's claims still hold
        time.sleep(max(0.0, lease + 0.5 - (time.monotonic() - killed_at)))
        assert asyncio.run(other.deliver()) == 5
        assert asyncio.run(other.deliver()) == 0
        assert len(receiver.got) == 5 and set(receiver.got.values()) == {1}
        assert line.split()[1] in receiver.got  # the one in flight at the kill, delivered later


def test_a_duckdb_outbox_from_before_claims_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with DuckDBStore(path) as store, store.transaction() as con:
        con.execute(  # the table as it was written before deliveries were claimed
            "CREATE TABLE monitor_deliveries (seq BIGINT NOT NULL, publisher VARCHAR NOT NULL, "
            "delivered TIMESTAMP, attempts INTEGER NOT NULL, last_error VARCHAR, "
            "PRIMARY KEY (seq, publisher))"
        )
    with DuckDBStore(path) as store:
        alerts = AlertStore(store)
        alerts.add(_alerts(2))
        first = alerts.alerts()[0].seq
        alerts.mark_failed(first, "hook", "down")
        assert [a.seq for a in alerts.claim("hook", owner="a", lease=60)] == [first, first + 1]
        assert alerts.deliveries(first)["hook"] == (False, 1, "down")
