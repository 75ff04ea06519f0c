"""The monitor's alert store in PostgreSQL, for several monitors sharing one history.

The same tables, contract and methods as :class:`~rekorkit.monitor.alerts.AlertStore`
(alerts unique by key, the delivery outbox, acknowledgements, watch
progress), in the database of a :class:`~rekorkit.store.postgres.PostgresStore`.
What sharing adds: two monitors that find the same thing insert it with
``ON CONFLICT (key) DO NOTHING`` (alert writers take turns on an advisory
lock, so overlapping batches never deadlock), so it is stored once; a
delivery is recorded per (alert, publisher) under the row's lock, so two
monitors publishing from one outbox count attempts exactly. The schema is
versioned in ``monitor_schema_migrations``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from typing import Any

from rekorkit.errors import StoreError
from rekorkit.monitor.alerts import Alert, AlertKind, StoredAlert
from rekorkit.store.postgres import PostgresStore, apply_migrations

__all__ = ["MIGRATIONS", "PostgresAlertStore"]

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE monitor_alerts (
            seq bigserial PRIMARY KEY,
            key text NOT NULL UNIQUE,
            kind text NOT NULL,
            log text NOT NULL,
            origin text NOT NULL,
            summary text NOT NULL,
            evidence text NOT NULL,
            created timestamptz NOT NULL);
        CREATE TABLE monitor_deliveries (
            seq bigint NOT NULL REFERENCES monitor_alerts (seq),
            publisher text NOT NULL,
            delivered timestamptz,
            attempts integer NOT NULL,
            last_error text,
            PRIMARY KEY (seq, publisher));
        CREATE TABLE monitor_acks (
            value text PRIMARY KEY,
            note text,
            created timestamptz NOT NULL);
        CREATE TABLE monitor_watch_progress (
            origin text PRIMARY KEY,
            matched_to bigint NOT NULL);
        """,
    ),
)
"""The alert tables, version by version."""

_ALERTS_LOCK = 0x616C7274  # pg_advisory_xact_lock key: "alrt"

_SELECT = (
    "SELECT a.seq, a.key, a.kind, a.log, a.origin, a.summary, a.evidence, a.created, "
    "k.value IS NOT NULL FROM monitor_alerts a LEFT JOIN monitor_acks k ON k.value = a.key "
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class PostgresAlertStore:
    """Deduplicated, durable alerts and their delivery outbox, in a :class:`PostgresStore`.

    Args:
        store: the monitor's store; its connection (and lock) is used.

    Raises:
        StoreError: the database failed, or holds a newer alert schema.
    """

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        with store.transaction() as cur:
            version = apply_migrations(cur, "monitor_schema_migrations", MIGRATIONS)
        if version != MIGRATIONS[-1][0]:
            raise StoreError(f"monitor alert schema version {version} is not supported")

    def add(self, alerts: Iterable[Alert], *, matched: tuple[str, int] | None = None) -> int:
        """Store new alerts (known keys are skipped, whoever stored them); return how many
        were new. ``matched = (origin, index)`` records the watch progress in the same
        transaction."""
        unique: dict[str, Alert] = {}
        for a in alerts:
            unique.setdefault(a.key, a)
        rows = [
            (a.key, a.kind.value, a.log, a.origin, a.summary, json.dumps(a.evidence))
            for a in unique.values()
        ]
        added = 0
        with self.store.transaction() as cur:
            if rows:
                # Alert writers take turns: two monitors inserting overlapping keys in
                # different orders would otherwise wait on each other's rows (a deadlock).
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_ALERTS_LOCK])
                # One statement, in input order; a key stored by another monitor is skipped.
                cur.execute(
                    "INSERT INTO monitor_alerts (key, kind, log, origin, summary, evidence, "
                    "created) SELECT key, kind, log, origin, summary, evidence, %s FROM "
                    "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::text[]) WITH ORDINALITY AS b(key, kind, log, origin, summary, evidence, "
                    "ord) ORDER BY ord ON CONFLICT (key) DO NOTHING",
                    [_now(), *map(list, zip(*rows, strict=True))],
                )
                added = cur.rowcount
            if matched is not None:
                cur.execute(
                    "INSERT INTO monitor_watch_progress VALUES (%s, %s) ON CONFLICT (origin) "
                    "DO UPDATE SET matched_to = greatest(monitor_watch_progress.matched_to, "
                    "excluded.matched_to)",
                    list(matched),
                )
        return added

    def matched_to(self, origin: str) -> int:
        """How far the stored entries of ``origin`` have been matched (0 if never)."""
        rows = self._query(
            "SELECT matched_to FROM monitor_watch_progress WHERE origin = %s", [origin]
        )
        return int(rows[0][0]) if rows else 0

    def _query(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.store.transaction() as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall()

    def _rows(self, where: str, params: list[Any], limit: int | None = None) -> list[StoredAlert]:
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self._query(f"{_SELECT} WHERE {where} ORDER BY a.seq{tail}", params)
        return [
            StoredAlert(
                int(r[0]),
                Alert(AlertKind(r[2]), r[3], r[4], r[5], json.loads(r[6]), r[1]),
                r[7],
                bool(r[8]),
            )
            for r in rows
        ]

    def alerts(self, kind: AlertKind | None = None) -> list[StoredAlert]:
        """Every stored alert (of ``kind``), oldest first."""
        if kind is None:
            return self._rows("true", [])
        return self._rows("a.kind = %s", [kind.value])

    def pending(self, publisher: str, limit: int = 100) -> list[StoredAlert]:
        """Alerts not yet delivered to ``publisher`` (acknowledged ones are skipped)."""
        return self._rows(
            "k.value IS NULL AND a.seq NOT IN (SELECT seq FROM monitor_deliveries "
            "WHERE publisher = %s AND delivered IS NOT NULL)",
            [publisher],
            limit,
        )

    def mark_delivered(self, seq: int, publisher: str) -> None:
        """Record that alert ``seq`` reached ``publisher``."""
        self._delivery(seq, publisher, None)

    def mark_failed(self, seq: int, publisher: str, error: str) -> None:
        """Record a failed delivery attempt (the alert stays in the outbox)."""
        self._delivery(seq, publisher, error)

    def _delivery(self, seq: int, publisher: str, error: str | None) -> None:
        delivered = _now() if error is None else None
        with self.store.transaction() as cur:
            cur.execute(
                "INSERT INTO monitor_deliveries VALUES (%s, %s, %s, 1, %s) "
                "ON CONFLICT (seq, publisher) DO UPDATE SET "
                "delivered = coalesce(monitor_deliveries.delivered, excluded.delivered), "
                "attempts = monitor_deliveries.attempts + 1, last_error = excluded.last_error",
                [seq, publisher, delivered, error],
            )

    def deliveries(self, seq: int) -> dict[str, tuple[bool, int, str | None]]:
        """Per publisher: ``(delivered, attempts, last_error)`` of alert ``seq``."""
        rows = self._query(
            "SELECT publisher, delivered IS NOT NULL, attempts, last_error "
            "FROM monitor_deliveries WHERE seq = %s",
            [seq],
        )
        return {str(r[0]): (bool(r[1]), int(r[2]), r[3]) for r in rows}

    def acknowledge(self, value: str, note: str = "") -> None:
        """Acknowledge an alert key, or a known-good value (entry UUID, key fingerprint)."""
        with self.store.transaction() as cur:
            cur.execute(
                "INSERT INTO monitor_acks VALUES (%s, %s, %s) ON CONFLICT (value) DO NOTHING",
                [value, note, _now()],
            )

    def acknowledged(self) -> set[str]:
        """Every acknowledged key or value."""
        return {str(r[0]) for r in self._query("SELECT value FROM monitor_acks", [])}
