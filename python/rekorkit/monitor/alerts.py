"""Alerts and their store: deduplicated, durable, delivered through an outbox.

An :class:`Alert` is a finding with the evidence a third party needs to
re-check it offline (signed checkpoints, proofs, tiles, indices, hashes). The
:class:`AlertStore` keeps alerts in the sync service's DuckDB file:

* ``monitor_alerts``: one row per alert, unique by its deduplication key, so
  the same finding seen again (after a restart, on the next poll) is stored
  once;
* ``monitor_deliveries``: one row per (alert, publisher): delivered or not,
  attempts, the last error, and the claim (``claimed_by`` until
  ``claimed_until``) of the dispatcher delivering it now; an alert not
  delivered to a publisher is in that publisher's outbox, retried until it is;
* ``monitor_acks``: acknowledged alert keys and known-good values (an entry
  UUID, a certificate fingerprint) that must not alert again;
* ``monitor_watch_progress``: how far each origin's stored entries have been
  matched against the watchlist.

Alerts and the watch progress that produced them are written in one
transaction, so a crash can neither lose a match nor record it twice.
Deliveries are claimed for a lease before they are sent (:meth:`AlertStore.claim`):
two dispatchers on one outbox never send one alert twice, and the claims of a
dispatcher killed mid-delivery lapse after the lease, so another takes over.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]

from rekorkit.store.duckdb import DuckDBStore

__all__ = [
    "SELECT_ALERTS",
    "Alert",
    "AlertKind",
    "AlertStorage",
    "AlertStore",
    "DeliveryRecorder",
    "StoredAlert",
    "record_delivery_sql",
    "stored_alert",
]


class AlertKind(StrEnum):
    """What an alert is about."""

    REWRITTEN_HISTORY = "rewritten_history"
    """A new checkpoint is not consistent with the stored one (RFC 9162 §2.1.4)."""
    ROLLBACK = "rollback"
    """The log serves a smaller tree than one it signed before."""
    SAME_SIZE_OTHER_ROOT = "same_size_other_root"
    """Two signed checkpoints of one size with different roots."""
    SPLIT_VIEW = "split_view"
    """A second vantage point sees a checkpoint inconsistent with ours."""
    STALE_LOG = "stale_log"
    """No new checkpoint for longer than the configured bound."""
    ENTRY_VERIFICATION = "entry_verification"
    """Entries, tiles or the signed checkpoint failed verification."""
    LOG_ERROR = "log_error"
    """The log could not be read for several rounds in a row."""
    WATCH_MATCH = "watch_match"
    """A stored entry matches a watchlist item."""
    HEARTBEAT = "heartbeat"
    """The periodic dead-man's switch (not stored)."""
    TEST = "test"
    """``rekorkit monitor --test-alert`` (not stored)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def evidence_json(evidence: dict[str, Any]) -> dict[str, Any]:
    """``evidence`` made JSON-ready: bytes become hex, tuples lists."""
    result: dict[str, Any] = json.loads(json.dumps(evidence, default=_json_default))
    return result


@dataclass(frozen=True, slots=True)
class Alert:
    """A monitoring finding.

    Attributes:
        kind: what was found.
        log: the configured log name (or ``""``).
        origin: the checkpoint origin concerned.
        summary: one human-readable line.
        evidence: JSON-ready values to re-check the finding offline.
        key: the deduplication key (the same finding always has the same key).
    """

    kind: AlertKind
    log: str
    origin: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @classmethod
    def make(
        cls,
        kind: AlertKind,
        log: str,
        origin: str,
        summary: str,
        evidence: dict[str, Any],
        *,
        identity: Sequence[object] = (),
    ) -> Alert:
        """An alert whose key is derived from its kind, origin and ``identity`` values."""
        key = ":".join([kind.value, origin, *(str(v) for v in identity)])
        return cls(kind, log, origin, summary, evidence_json(evidence), key)

    @property
    def alert_id(self) -> str:
        """A stable identifier (hex SHA-256 of the key), sent to receivers for idempotency."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]

    def to_json(self, created: _dt.datetime | None = None) -> dict[str, Any]:
        """The alert as published (the JSON lines, webhook and exec hook formats)."""
        doc: dict[str, Any] = {
            "id": self.alert_id,
            "kind": self.kind.value,
            "log": self.log,
            "origin": self.origin,
            "summary": self.summary,
            "key": self.key,
            "evidence": self.evidence,
        }
        if created is not None:
            doc["created"] = created.isoformat()
        return doc


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as kept by the :class:`AlertStore`: its sequence number and creation time."""

    seq: int
    alert: Alert
    created: _dt.datetime
    acknowledged: bool

    def to_json(self) -> dict[str, Any]:
        """The published form, with ``seq`` and ``created``."""
        doc = self.alert.to_json(self.created)
        doc["seq"] = self.seq
        return doc


_DDL = [
    "CREATE SEQUENCE IF NOT EXISTS monitor_alert_seq",
    """CREATE TABLE IF NOT EXISTS monitor_alerts (
        seq BIGINT PRIMARY KEY DEFAULT nextval('monitor_alert_seq'),
        key VARCHAR NOT NULL UNIQUE,
        kind VARCHAR NOT NULL,
        log VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        summary VARCHAR NOT NULL,
        evidence VARCHAR NOT NULL,
        created TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS monitor_deliveries (
        seq BIGINT NOT NULL,
        publisher VARCHAR NOT NULL,
        delivered TIMESTAMP,
        attempts INTEGER NOT NULL,
        last_error VARCHAR,
        claimed_by VARCHAR,
        claimed_until TIMESTAMP,
        PRIMARY KEY (seq, publisher))""",
    # Files written before deliveries were claimed.
    "ALTER TABLE monitor_deliveries ADD COLUMN IF NOT EXISTS claimed_by VARCHAR",
    "ALTER TABLE monitor_deliveries ADD COLUMN IF NOT EXISTS claimed_until TIMESTAMP",
    """CREATE TABLE IF NOT EXISTS monitor_acks (
        value VARCHAR PRIMARY KEY,
        note VARCHAR,
        created TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS monitor_watch_progress (
        origin VARCHAR PRIMARY KEY,
        matched_to BIGINT NOT NULL)""",
]


_BATCH = pa.schema(
    [("ord", pa.int64())]
    + [(name, pa.string()) for name in ("key", "kind", "log", "origin", "summary", "evidence")]
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


class AlertStorage(Protocol):
    """What the sync service and the :class:`~rekorkit.monitor.publishers.Dispatcher`
    need of an alert store: :class:`AlertStore` (DuckDB) and
    :class:`~rekorkit.monitor.postgres_alerts.PostgresAlertStore` (shared)."""

    def add(self, alerts: Iterable[Alert], *, matched: tuple[str, int] | None = None) -> int:
        """Store new alerts (and the watch progress); how many were new."""
        ...

    def matched_to(self, origin: str) -> int:
        """How far the stored entries of ``origin`` have been matched."""
        ...

    def alerts(self, kind: AlertKind | None = None) -> list[StoredAlert]:
        """Every stored alert (of ``kind``), oldest first."""
        ...

    def pending(self, publisher: str, limit: int = 100) -> list[StoredAlert]:
        """Alerts not yet delivered to ``publisher``."""
        ...

    def claim(
        self, publisher: str, *, owner: str, lease: float, limit: int = 100
    ) -> list[StoredAlert]:
        """Reserve undelivered alerts for ``owner`` for ``lease`` seconds; those reserved."""
        ...

    def release(self, seqs: Sequence[int], publisher: str, *, owner: str) -> None:
        """Give back claims of ``owner`` that it will not deliver now."""
        ...

    def mark_delivered(self, seq: int, publisher: str, *, owner: str | None = None) -> None:
        """Record that alert ``seq`` reached ``publisher``."""
        ...

    def mark_failed(
        self, seq: int, publisher: str, error: str, *, owner: str | None = None
    ) -> None:
        """Record a failed delivery attempt."""
        ...

    def deliveries(self, seq: int) -> dict[str, tuple[bool, int, str | None]]:
        """Per publisher: ``(delivered, attempts, last_error)``."""
        ...

    def acknowledge(self, value: str, note: str = "") -> None:
        """Acknowledge an alert key or a known-good value."""
        ...

    def acknowledged(self) -> set[str]:
        """Every acknowledged key or value."""
        ...


# The alert columns :func:`stored_alert` reads, with ``a`` the alert and ``k`` its ack.
SELECT_ALERTS = (
    "SELECT a.seq, a.key, a.kind, a.log, a.origin, a.summary, a.evidence, a.created, "
    "k.value IS NOT NULL FROM monitor_alerts a LEFT JOIN monitor_acks k ON k.value = a.key "
)
# Not delivered to publisher ``?`` and not acknowledged.
_UNDELIVERED = (
    "k.value IS NULL AND a.seq NOT IN (SELECT seq FROM monitor_deliveries "
    "WHERE publisher = ? AND delivered IS NOT NULL)"
)


def stored_alert(r: Sequence[Any]) -> StoredAlert:
    """A :class:`StoredAlert` from a row of :data:`SELECT_ALERTS` (either backend)."""
    created = r[7] if r[7].tzinfo is not None else r[7].replace(tzinfo=_dt.UTC)
    return StoredAlert(
        int(r[0]),
        Alert(AlertKind(r[2]), r[3], r[4], r[5], json.loads(r[6]), r[1]),
        created,
        bool(r[8]),
    )


def record_delivery_sql(p: str) -> str:
    """The upsert recording one delivery attempt, with ``p`` the driver's parameter marker.

    Parameters: seq, publisher, delivered (``None``: failed), error, then the
    owner four times. The claim ends unless another owner took it over after
    this one's lease lapsed (that claim stays theirs).
    """
    return (
        "INSERT INTO monitor_deliveries (seq, publisher, delivered, attempts, last_error) "
        f"VALUES ({p}, {p}, {p}, 1, {p}) ON CONFLICT (seq, publisher) DO UPDATE SET "
        "delivered = coalesce(monitor_deliveries.delivered, excluded.delivered), "
        "attempts = monitor_deliveries.attempts + 1, last_error = excluded.last_error, "
        f"claimed_by = CASE WHEN {p}::text IS NULL OR monitor_deliveries.claimed_by = {p} "
        "THEN NULL ELSE monitor_deliveries.claimed_by END, "
        f"claimed_until = CASE WHEN {p}::text IS NULL OR monitor_deliveries.claimed_by = {p} "
        "THEN NULL ELSE monitor_deliveries.claimed_until END"
    )


class DeliveryRecorder:
    """``mark_delivered`` and ``mark_failed`` over a backend's ``_delivery`` (both stores)."""

    def _delivery(self, seq: int, publisher: str, error: str | None, owner: str | None) -> None:
        raise NotImplementedError

    def mark_delivered(self, seq: int, publisher: str, *, owner: str | None = None) -> None:
        """Record that alert ``seq`` reached ``publisher`` (and end ``owner``'s claim)."""
        self._delivery(seq, publisher, None, owner)

    def mark_failed(
        self, seq: int, publisher: str, error: str, *, owner: str | None = None
    ) -> None:
        """Record a failed delivery attempt (the alert stays in the outbox, unclaimed)."""
        self._delivery(seq, publisher, error, owner)


class AlertStore(DeliveryRecorder):
    """Deduplicated, durable alerts and their delivery outbox, in a :class:`DuckDBStore`."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        with store.transaction() as con:
            for ddl in _DDL:
                con.execute(ddl)

    def add(self, alerts: Iterable[Alert], *, matched: tuple[str, int] | None = None) -> int:
        """Store new alerts (known keys are skipped); return how many were new.

        ``matched = (origin, index)`` records, in the same transaction, that
        the watchlist has been matched over the entries of ``origin`` below
        ``index``.
        """
        unique: dict[str, Alert] = {}
        for a in alerts:
            unique.setdefault(a.key, a)
        now = _now()
        batch = pa.table(
            {
                "ord": list(range(len(unique))),
                "key": [a.key for a in unique.values()],
                "kind": [a.kind.value for a in unique.values()],
                "log": [a.log for a in unique.values()],
                "origin": [a.origin for a in unique.values()],
                "summary": [a.summary for a in unique.values()],
                "evidence": [json.dumps(a.evidence) for a in unique.values()],
            },
            schema=_BATCH,
        )
        with self.store.transaction() as con:
            added = 0
            if batch.num_rows:
                con.register("_rekorkit_alerts", batch)
                try:
                    # One statement: alerts whose key is stored already are skipped.
                    row = con.execute(
                        "INSERT INTO monitor_alerts (key, kind, log, origin, summary, evidence, "
                        "created) SELECT b.key, b.kind, b.log, b.origin, b.summary, b.evidence, ? "
                        "FROM _rekorkit_alerts b ANTI JOIN monitor_alerts a ON a.key = b.key "
                        "ORDER BY b.ord",
                        [now],
                    ).fetchone()
                    added = int(row[0]) if row else 0
                finally:
                    con.unregister("_rekorkit_alerts")
            if matched is not None:
                con.execute(
                    "INSERT INTO monitor_watch_progress VALUES (?, ?) ON CONFLICT DO UPDATE "
                    "SET matched_to = greatest(matched_to, excluded.matched_to)",
                    list(matched),
                )
        return added

    def matched_to(self, origin: str) -> int:
        """How far the stored entries of ``origin`` have been matched (0 if never)."""
        with self.store.transaction() as con:
            row = con.execute(
                "SELECT matched_to FROM monitor_watch_progress WHERE origin = ?", [origin]
            ).fetchone()
        return int(row[0]) if row else 0

    def _rows(self, where: str, params: list[Any], limit: int = -1) -> list[StoredAlert]:
        with self.store.transaction() as con:
            return self._select(con, where, params, limit)

    @staticmethod
    def _select(con: Any, where: str, params: list[Any], limit: int = -1) -> list[StoredAlert]:
        tail = f" LIMIT {int(limit)}" if limit >= 0 else ""
        rows = con.execute(f"{SELECT_ALERTS} WHERE {where} ORDER BY a.seq{tail}", params).fetchall()
        return [stored_alert(r) for r in rows]

    def alerts(self, kind: AlertKind | None = None) -> list[StoredAlert]:
        """Every stored alert (of ``kind``), oldest first."""
        if kind is None:
            return self._rows("true", [])
        return self._rows("a.kind = ?", [kind.value])

    def pending(self, publisher: str, limit: int = 100) -> list[StoredAlert]:
        """Alerts not yet delivered to ``publisher`` (acknowledged ones are skipped)."""
        return self._rows(_UNDELIVERED, [publisher], limit)

    def claim(
        self, publisher: str, *, owner: str, lease: float, limit: int = 100
    ) -> list[StoredAlert]:
        """Reserve up to ``limit`` undelivered alerts for ``owner`` for ``lease`` seconds.

        Alerts another owner holds an unexpired claim on are skipped. The
        selection and the claims are one transaction (DuckDB admits one
        writer), so two dispatchers never claim the same delivery.
        """
        now = _now()
        until = now + _dt.timedelta(seconds=lease)
        with self.store.transaction() as con:
            found = self._select(
                con,
                f"{_UNDELIVERED} AND a.seq NOT IN (SELECT seq FROM monitor_deliveries "
                "WHERE publisher = ? AND claimed_until > ?)",
                [publisher, publisher, now],
                limit,
            )
            if found:
                con.executemany(
                    "INSERT INTO monitor_deliveries (seq, publisher, attempts, claimed_by, "
                    "claimed_until) VALUES (?, ?, 0, ?, ?) ON CONFLICT DO UPDATE SET "
                    "claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until",
                    [[a.seq, publisher, owner, until] for a in found],
                )
        return found

    def release(self, seqs: Sequence[int], publisher: str, *, owner: str) -> None:
        """Give back ``owner``'s claims on ``seqs`` (not delivered now; due again at once)."""
        if not seqs:
            return
        with self.store.transaction() as con:
            con.executemany(
                "UPDATE monitor_deliveries SET claimed_by = NULL, claimed_until = NULL "
                "WHERE seq = ? AND publisher = ? AND claimed_by = ?",
                [[seq, publisher, owner] for seq in seqs],
            )

    def _delivery(self, seq: int, publisher: str, error: str | None, owner: str | None) -> None:
        delivered = _now() if error is None else None
        with self.store.transaction() as con:
            con.execute(
                record_delivery_sql("?"),
                [seq, publisher, delivered, error, owner, owner, owner, owner],
            )

    def deliveries(self, seq: int) -> dict[str, tuple[bool, int, str | None]]:
        """Per publisher: ``(delivered, attempts, last_error)`` of alert ``seq``."""
        with self.store.transaction() as con:
            rows = con.execute(
                "SELECT publisher, delivered IS NOT NULL, attempts, last_error "
                "FROM monitor_deliveries WHERE seq = ?",
                [seq],
            ).fetchall()
        return {str(r[0]): (bool(r[1]), int(r[2]), r[3]) for r in rows}

    def acknowledge(self, value: str, note: str = "") -> None:
        """Acknowledge an alert key, or a known-good value (entry UUID, key fingerprint).

        Acknowledged alerts are not delivered, and watch matches on an
        acknowledged value are not raised.
        """
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO monitor_acks VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [value, note, _now()],
            )

    def acknowledged(self) -> set[str]:
        """Every acknowledged key or value."""
        with self.store.transaction() as con:
            rows = con.execute("SELECT value FROM monitor_acks").fetchall()
        return {str(r[0]) for r in rows}
