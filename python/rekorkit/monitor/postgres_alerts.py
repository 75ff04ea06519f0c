"""The monitor's alert store in PostgreSQL, for several monitors sharing one history.

The same tables, contract and methods as :class:`~rekorkit.monitor.alerts.AlertStore`
(alerts unique by key, the delivery outbox, acknowledgements, watch
progress), in the database of a :class:`~rekorkit.store.postgres.PostgresStore`.
What sharing adds: two monitors that find the same thing insert it with
``ON CONFLICT (key) DO NOTHING`` (alert writers take turns on an advisory
lock, so overlapping batches never deadlock), so it is stored once; a
delivery is claimed before it is sent: the alert rows are picked with
``FOR UPDATE SKIP LOCKED`` and the claim is taken by an upsert that only
succeeds where no live claim exists, so two monitors publishing from one
outbox never send an alert twice, and the claim of a monitor killed
mid-delivery lapses after its lease (server time, ``now()``), when another
monitor takes it over. The schema is versioned in ``monitor_schema_migrations``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rekorkit.errors import StoreError
from rekorkit.monitor.alerts import (
    SELECT_ALERTS,
    Alert,
    AlertKind,
    DeliveryRecorder,
    StoredAlert,
    record_delivery_sql,
    stored_alert,
)
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
    (
        2,
        """
        ALTER TABLE monitor_deliveries ADD COLUMN claimed_by text;
        ALTER TABLE monitor_deliveries ADD COLUMN claimed_until timestamptz;
        """,
    ),
)
"""The alert tables, version by version."""

_ALERTS_LOCK = 0x616C7274  # pg_advisory_xact_lock key: "alrt"

# Not delivered to publisher %s and not acknowledged.
_UNDELIVERED = (
    "k.value IS NULL AND a.seq NOT IN (SELECT seq FROM monitor_deliveries "
    "WHERE publisher = %s AND delivered IS NOT NULL)"
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class PostgresAlertStore(DeliveryRecorder):
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
        rows = self._query(f"{SELECT_ALERTS} WHERE {where} ORDER BY a.seq{tail}", params)
        return [stored_alert(r) for r in rows]

    def alerts(self, kind: AlertKind | None = None) -> list[StoredAlert]:
        """Every stored alert (of ``kind``), oldest first."""
        if kind is None:
            return self._rows("true", [])
        return self._rows("a.kind = %s", [kind.value])

    def pending(self, publisher: str, limit: int = 100) -> list[StoredAlert]:
        """Alerts not yet delivered to ``publisher`` (acknowledged ones are skipped)."""
        return self._rows(_UNDELIVERED, [publisher], limit)

    def claim(
        self, publisher: str, *, owner: str, lease: float, limit: int = 100
    ) -> list[StoredAlert]:
        """Reserve up to ``limit`` undelivered alerts for ``owner`` for ``lease`` seconds.

        Alerts another monitor is claiming right now are skipped (``SKIP
        LOCKED``), and so are those it holds an unexpired claim on: the upsert
        takes a claim only where the latest committed row has none, so two
        monitors never both succeed.
        """
        with self.store.transaction() as cur:
            cur.execute(
                "WITH c AS (SELECT a.seq FROM monitor_alerts a "
                "LEFT JOIN monitor_acks k ON k.value = a.key "
                "LEFT JOIN monitor_deliveries d ON d.seq = a.seq AND d.publisher = %s "
                "WHERE k.value IS NULL AND d.delivered IS NULL "
                "AND (d.claimed_until IS NULL OR d.claimed_until < now()) "
                "ORDER BY a.seq LIMIT %s FOR UPDATE OF a SKIP LOCKED) "
                "INSERT INTO monitor_deliveries (seq, publisher, attempts, claimed_by, "
                "claimed_until) SELECT seq, %s, 0, %s, now() + make_interval(secs => %s) FROM c "
                "ON CONFLICT (seq, publisher) DO UPDATE SET claimed_by = excluded.claimed_by, "
                "claimed_until = excluded.claimed_until "
                "WHERE monitor_deliveries.delivered IS NULL AND "
                "(monitor_deliveries.claimed_until IS NULL OR "
                "monitor_deliveries.claimed_until < now()) RETURNING seq",
                [publisher, limit, publisher, owner, lease],
            )
            seqs = sorted(int(r[0]) for r in cur.fetchall())
            if not seqs:
                return []
            cur.execute(f"{SELECT_ALERTS} WHERE a.seq = ANY(%s) ORDER BY a.seq".encode(), [seqs])
            return [stored_alert(r) for r in cur.fetchall()]

    def release(self, seqs: Sequence[int], publisher: str, *, owner: str) -> None:
        """Give back ``owner``'s claims on ``seqs`` (not delivered now; due again at once)."""
        if not seqs:
            return
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE monitor_deliveries SET claimed_by = NULL, claimed_until = NULL "
                "WHERE seq = ANY(%s) AND publisher = %s AND claimed_by = %s",
                [list(seqs), publisher, owner],
            )

    def _delivery(self, seq: int, publisher: str, error: str | None, owner: str | None) -> None:
        delivered = _now() if error is None else None
        with self.store.transaction() as cur:
            cur.execute(
                record_delivery_sql("%s").encode(),
                [seq, publisher, delivered, error, owner, owner, owner, owner],
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
