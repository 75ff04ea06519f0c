"""The shared queue storage: PostgreSQL (psycopg 3), for many workers on one queue.

The same contract as :class:`~rekorkit.queue.sqlite.SQLiteQueueStorage` (see
:mod:`rekorkit.queue.storage`), with what sharing needs:

* claims pick due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and lease
  them in the same statement, so workers in many processes and on many hosts
  claim disjoint items without waiting for each other (the PostgreSQL
  ``SELECT`` documentation, "The Locking Clause");
* every method is one transaction, committed (``synchronous_commit`` as the
  server has it, ``on`` by default) before it returns;
* lease tokens come from ``gen_random_uuid()`` (a strong random source);
* the schema is versioned in ``queue_schema_migrations`` and migrated under the
  same advisory lock as the entry store, so the queue can share a database
  with :class:`~rekorkit.store.postgres.PostgresStore`.

A leased item's ``next_attempt_at`` holds its lease expiry, as in SQLite, so
"due" is one range over one partial index for pending and expired leases.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from rekorkit.errors import StoreError
from rekorkit.queue.model import (
    Attempt,
    Claim,
    Dead,
    Done,
    Outcome,
    QueueBackend,
    QueueCounts,
    Retry,
    State,
    Submission,
    submission_from_row,
)
from rekorkit.queue.storage import NewSubmission
from rekorkit.store.postgres import apply_migrations, safe_url

__all__ = ["MIGRATIONS", "PostgresQueueStorage"]

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE queue_backends (
            key text PRIMARY KEY,
            url text NOT NULL,
            api_version integer NOT NULL,
            public_key text,
            vkey text);
        CREATE TABLE queue_submissions (
            seq bigserial NOT NULL,
            id text PRIMARY KEY,
            backend text NOT NULL REFERENCES queue_backends (key),
            leaf_hash bytea NOT NULL,
            kind text NOT NULL,
            request bytea NOT NULL,
            state text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            claims integer NOT NULL DEFAULT 0,
            next_attempt_at double precision NOT NULL,
            lease_token text,
            log_size_hint bigint,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            errors jsonb NOT NULL DEFAULT '[]',
            last_error_at double precision,
            receipt text,
            log_index bigint,
            dead_reason text,
            UNIQUE (backend, leaf_hash));
        CREATE INDEX queue_submissions_due ON queue_submissions (next_attempt_at, seq)
            WHERE state IN ('pending', 'leased');
        CREATE INDEX queue_submissions_state ON queue_submissions (state, created_at);
        """,
    ),
)
"""The queue's schema, version by version."""

# The SQLite storage's row shape (errors as JSON text), so one function reads both.
_COLUMNS = (
    "id, backend, leaf_hash, kind, request, state, attempts, next_attempt_at, created_at,"
    " updated_at, errors::text AS errors, receipt, log_index, dead_reason, claims,"
    " log_size_hint, seq"
)
_OPEN = "state IN ('pending', 'leased')"
_GUARD = "WHERE id = %s AND lease_token = %s AND state = 'leased'"


class PostgresQueueStorage:
    """:class:`~rekorkit.queue.storage.QueueStorage` in a PostgreSQL database.

    One connection per instance, calls serialized on a lock; open one per
    process. Any number of processes may share the database.

    Args:
        url: a ``postgresql://`` URL (libpq connection string).
        connect_timeout: seconds to wait for the server.

    Raises:
        StoreError: the server cannot be reached or the schema is newer than this rekorkit.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10) -> None:
        self.url = url
        self._lock = threading.Lock()
        try:
            self._con = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout))
        except psycopg.Error as exc:
            raise StoreError(f"cannot open PostgreSQL queue {safe_url(url)}: {exc}") from exc
        try:
            with self._tx("opening the queue") as cur:
                version = apply_migrations(cur, "queue_schema_migrations", MIGRATIONS)
        except BaseException:
            self._con.close()
            raise
        if version != MIGRATIONS[-1][0]:
            self._con.close()
            raise StoreError(
                f"PostgreSQL queue {safe_url(url)} has schema version {version}; "
                f"this rekorkit reads version {MIGRATIONS[-1][0]}"
            )

    @contextmanager
    def _tx(self, doing: str) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction under the instance lock; database errors become ``StoreError``."""
        with self._lock:
            try:
                with self._con.transaction(), self._con.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise StoreError(
                    f"PostgreSQL queue {safe_url(self.url)}: {doing} failed: {exc}"
                ) from exc

    # ------------------------------------------------------------------ writes

    def enqueue_many(self, items: Sequence[NewSubmission], *, now: float) -> list[str]:
        """Store the items not yet queued, due at ``now``; return every item's ID, in order."""
        backends = {i.backend.key: i.backend for i in items}
        with self._tx("enqueueing") as cur:
            cur.executemany(
                "INSERT INTO queue_backends (key, url, api_version, public_key, vkey)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET"
                " public_key = coalesce(excluded.public_key, queue_backends.public_key),"
                " vkey = coalesce(excluded.vkey, queue_backends.vkey)",
                [(k, b.url, b.api_version, b.public_key, b.vkey) for k, b in backends.items()],
            )
            cur.executemany(
                "INSERT INTO queue_submissions (id, backend, leaf_hash, kind, request, state,"
                " next_attempt_at, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (i.id, i.backend.key, i.leaf_hash, i.kind, i.request, now, now, now)
                    for i in items
                ],
            )
        return [i.id for i in items]

    def claim(
        self,
        *,
        limit: int,
        lease: float,
        now: float,
        backend: str | None = None,
        log_size_hint: int | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` due items for ``lease`` seconds; rows another
        worker is claiming right now are skipped, not waited for."""
        if limit <= 0:
            return []
        where = f"{_OPEN} AND next_attempt_at <= %s"
        args: list[Any] = [now]
        if backend is not None:
            where += " AND backend = %s"
            args.append(backend)
        expires = now + lease
        picked = ", ".join(f"p.{c.split()[-1]}" for c in _COLUMNS.split(","))
        with self._tx("claiming") as cur:
            cur.execute(
                f"WITH p AS (SELECT {_COLUMNS} FROM queue_submissions WHERE {where}"
                "  ORDER BY next_attempt_at, seq LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE queue_submissions s SET state = 'leased',"
                "  lease_token = replace(gen_random_uuid()::text, '-', ''),"
                "  next_attempt_at = %s, claims = s.claims + 1,"
                "  log_size_hint = coalesce(s.log_size_hint, %s), updated_at = %s"
                f" FROM p WHERE s.id = p.id RETURNING {picked}, s.lease_token",
                [*args, limit, expires, log_size_hint, now],
            )
            rows = sorted(cur.fetchall(), key=lambda r: (r[7], r[16]))
        return [
            Claim(
                submission=submission_from_row(row),
                token=row[17],
                lease_expires=expires,
                claims=int(row[14]) + 1,
                log_size_hint=row[15] if row[15] is not None else log_size_hint,
            )
            for row in rows
        ]

    def record(self, outcomes: Sequence[tuple[Claim, Outcome]], *, now: float) -> list[bool]:
        """Apply outcomes where the lease is still held; ``False`` where it was lost."""
        applied = []
        with self._tx("recording outcomes") as cur:
            for claim, outcome in outcomes:
                key = (claim.submission.id, claim.token)
                if isinstance(outcome, Done):
                    cur.execute(
                        "UPDATE queue_submissions SET state = 'done', lease_token = NULL,"
                        f" receipt = %s, log_index = %s, updated_at = %s {_GUARD}",
                        (json.dumps(outcome.receipt), outcome.log_index, now, *key),
                    )
                elif isinstance(outcome, Retry | Dead):
                    state, due, reason = (
                        ("pending", outcome.at, None)
                        if isinstance(outcome, Retry)
                        else ("dead", None, outcome.reason.value)
                    )
                    cur.execute(
                        "UPDATE queue_submissions SET state = %s, lease_token = NULL,"
                        " attempts = attempts + 1,"
                        " next_attempt_at = coalesce(%s, next_attempt_at),"
                        " dead_reason = %s, errors = errors || jsonb_build_array(%s::jsonb),"
                        f" last_error_at = %s, updated_at = %s {_GUARD}",
                        (
                            state,
                            due,
                            reason,
                            json.dumps(outcome.attempt.to_json()),
                            outcome.attempt.at,
                            now,
                            *key,
                        ),
                    )
                else:
                    raise TypeError(f"not an outcome: {outcome!r}")
                applied.append(cur.rowcount == 1)
        return applied

    def release(self, claims: Sequence[Claim]) -> None:
        """Give leases back unused: due again at once, no attempt counted."""
        with self._tx("releasing leases") as cur:
            cur.executemany(
                "UPDATE queue_submissions SET state = 'pending', lease_token = NULL,"
                " next_attempt_at = updated_at, claims = greatest(claims - 1, 0)"
                f" {_GUARD}",
                [(c.submission.id, c.token) for c in claims],
            )

    def requeue(self, ids: Sequence[str] = (), *, dead: bool = False, now: float) -> int:
        """Make dead (or pending) items due now with a fresh attempt budget."""
        set_ = (
            "SET state = 'pending', attempts = 0, dead_reason = NULL,"
            " next_attempt_at = %s, updated_at = %s"
        )
        count = 0
        with self._tx("requeueing") as cur:
            if dead:
                cur.execute(f"UPDATE queue_submissions {set_} WHERE state = 'dead'", (now, now))
                count += cur.rowcount
            for sid in ids:
                cur.execute(
                    f"UPDATE queue_submissions {set_}"
                    " WHERE id = %s AND state IN ('dead', 'pending')",
                    (now, now, sid),
                )
                count += cur.rowcount
        return count

    # ------------------------------------------------------------------ reads

    def get(self, submission_id: str) -> Submission | None:
        """One submission by ID."""
        with self._tx("reading") as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM queue_submissions WHERE id = %s", [submission_id])
            row = cur.fetchone()
        return submission_from_row(row) if row is not None else None

    def counts(self, *, now: float) -> QueueCounts:
        """Counts per state, what is due, and the last error (one consistent snapshot)."""
        with self._tx("counting") as cur:
            by_state = {s.value: 0 for s in State}
            cur.execute("SELECT state, count(*) FROM queue_submissions GROUP BY state")
            for state, n in cur.fetchall():
                by_state[state] = int(n)
            cur.execute(
                "SELECT count(*), min(next_attempt_at) FROM queue_submissions"
                f" WHERE {_OPEN} AND next_attempt_at <= %s",
                [now],
            )
            due, oldest = cur.fetchone() or (0, None)
            cur.execute(
                "SELECT min(next_attempt_at) FROM queue_submissions WHERE state = 'pending'"
            )
            (next_due,) = cur.fetchone() or (None,)
            cur.execute(
                "SELECT id, errors -> -1 FROM queue_submissions"
                " WHERE last_error_at IS NOT NULL ORDER BY last_error_at DESC LIMIT 1"
            )
            last = cur.fetchone()
        return QueueCounts(
            by_state=by_state,
            due=int(due),
            oldest_due_at=oldest,
            next_due_at=next_due,
            last_error=(last[0], Attempt.from_json(last[1])) if last else None,
        )

    def backends(self) -> list[QueueBackend]:
        """Every backend that has submissions."""
        with self._tx("reading backends") as cur:
            cur.execute(
                "SELECT url, api_version, public_key, vkey FROM queue_backends ORDER BY key"
            )
            rows = cur.fetchall()
        return [QueueBackend(url=r[0], api_version=r[1], public_key=r[2], vkey=r[3]) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._con.close()

    def list(
        self, *, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> list[Submission]:
        """Submissions, oldest first, optionally of one state."""
        where, args = ("WHERE state = %s", [state.value]) if state is not None else ("", [])
        with self._tx("listing") as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM queue_submissions {where}"
                " ORDER BY created_at, id LIMIT %s OFFSET %s",
                [*args, limit, offset],
            )
            rows = cur.fetchall()
        return [submission_from_row(r) for r in rows]
