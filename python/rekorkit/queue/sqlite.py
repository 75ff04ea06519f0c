"""The embedded queue storage: one SQLite file in WAL mode (stdlib ``sqlite3``).

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so every committed
transaction (an enqueue, a claim, an outcome) is on disk before the call
returns; NORMAL would be faster but may lose the last commits on power loss,
and an enqueue that returned must never be lost. Claims run under ``BEGIN
IMMEDIATE``, which takes the write lock before reading, so two processes
cannot lease the same item. A busy timeout makes concurrent writers wait for
each other instead of failing at once; a file still locked after it is a
:class:`~rekorkit.errors.StoreError` naming the file. The schema version is
kept in ``PRAGMA user_version`` (https://www.sqlite.org/pragma.html).

A leased item's ``next_attempt_at`` holds its lease expiry, so "due" is one
range over one partial index for pending and expired-lease items alike.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

__all__ = ["SCHEMA_VERSION", "SQLiteQueueStorage"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE backends (
    key TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    api_version INTEGER NOT NULL,
    public_key TEXT,
    vkey TEXT
);
CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL REFERENCES backends(key),
    leaf_hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    request BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_token TEXT,
    log_size_hint INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]',
    last_error_at REAL,
    receipt TEXT,
    log_index INTEGER,
    dead_reason TEXT,
    UNIQUE (backend, leaf_hash)
);
CREATE INDEX submissions_due ON submissions (next_attempt_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX submissions_state ON submissions (state, created_at);
"""

_COLUMNS = (
    "id, backend, leaf_hash, kind, request, state, attempts, next_attempt_at, created_at,"
    " updated_at, errors, receipt, log_index, dead_reason, claims, log_size_hint, lease_token"
)
_OPEN = "state IN ('pending', 'leased')"


class SQLiteQueueStorage:
    """:class:`~rekorkit.queue.storage.QueueStorage` on one SQLite file.

    Safe for several processes on one file, and for one instance shared by
    threads (calls are serialized on a lock).

    Args:
        path: the queue file (created with the schema if missing).
        busy_timeout: seconds to wait for another process's write lock.

    Raises:
        StoreError: the file is not a queue (corrupt, another database, a newer
            schema) or stays locked.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open queue file {self.path}: {exc}") from exc
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"queue file {self.path} is locked by another process "
                f"(waited {self.busy_timeout:g} s while {doing})"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return StoreError(f"queue file {self.path} is corrupt or not a queue ({text})")
        return StoreError(f"queue file {self.path}: {doing} failed: {text}")

    def _setup(self) -> None:
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"queue file {self.path}: WAL mode unavailable (got {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return  # an existing queue: no write lock needed to open it
            with self._tx():
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    tables = self._db.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                    ).fetchone()[0]
                    if tables:
                        raise StoreError(
                            f"{self.path} is an SQLite database but not a rekorkit queue"
                        )
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise StoreError(
                        f"queue file {self.path} has schema version {version}; "
                        f"this rekorkit reads version {SCHEMA_VERSION}"
                    )
        except sqlite3.Error as exc:
            raise self._error(exc, "opening the queue") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock first, then the reads."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _locked(self, doing: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if write:
                    with self._tx() as db:
                        yield db
                else:
                    yield self._db
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    # ------------------------------------------------------------------ writes

    def enqueue_many(self, items: Sequence[NewSubmission], *, now: float) -> list[str]:
        """Store the items not yet queued, due at ``now``; return every item's ID, in order."""
        backends = {i.backend.key: i.backend for i in items}
        with self._locked("enqueueing") as db:
            db.executemany(
                "INSERT INTO backends (key, url, api_version, public_key, vkey)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " public_key = coalesce(excluded.public_key, public_key),"
                " vkey = coalesce(excluded.vkey, vkey)",
                [(k, b.url, b.api_version, b.public_key, b.vkey) for k, b in backends.items()],
            )
            db.executemany(
                "INSERT INTO submissions (id, backend, leaf_hash, kind, request, state,"
                " next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT DO NOTHING",
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
        """Lease up to ``limit`` due items for ``lease`` seconds (see the protocol)."""
        if limit <= 0:
            return []
        where = f"{_OPEN} AND next_attempt_at <= ?"
        args: list[Any] = [now]
        if backend is not None:
            where += " AND backend = ?"
            args.append(backend)
        expires = now + lease
        with self._locked("claiming") as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM submissions WHERE {where}"
                " ORDER BY next_attempt_at LIMIT ?",
                [*args, limit],
            ).fetchall()
            tokens = [secrets.token_hex(16) for _ in rows]
            db.executemany(
                "UPDATE submissions SET state = 'leased', lease_token = ?, next_attempt_at = ?,"
                " claims = claims + 1, log_size_hint = coalesce(log_size_hint, ?),"
                " updated_at = ? WHERE id = ?",
                [(t, expires, log_size_hint, now, r[0]) for t, r in zip(tokens, rows, strict=True)],
            )
        claims = []
        for token, row in zip(tokens, rows, strict=True):
            sub = submission_from_row(row)
            claims.append(
                Claim(
                    submission=sub,
                    token=token,
                    lease_expires=expires,
                    claims=row[14] + 1,
                    log_size_hint=row[15] if row[15] is not None else log_size_hint,
                )
            )
        return claims

    def record(self, outcomes: Sequence[tuple[Claim, Outcome]], *, now: float) -> list[bool]:
        """Apply outcomes where the lease is still held; ``False`` where it was lost."""
        applied = []
        guard = "WHERE id = ? AND lease_token = ? AND state = 'leased'"
        with self._locked("recording outcomes") as db:
            for claim, outcome in outcomes:
                key = (claim.submission.id, claim.token)
                if isinstance(outcome, Done):
                    cur = db.execute(
                        "UPDATE submissions SET state = 'done', lease_token = NULL,"
                        f" receipt = ?, log_index = ?, updated_at = ? {guard}",
                        (json.dumps(outcome.receipt), outcome.log_index, now, *key),
                    )
                elif isinstance(outcome, Retry):
                    cur = db.execute(
                        "UPDATE submissions SET state = 'pending', lease_token = NULL,"
                        " attempts = attempts + 1, next_attempt_at = ?,"
                        " errors = json_insert(errors, '$[#]', json(?)), last_error_at = ?,"
                        f" updated_at = ? {guard}",
                        (
                            outcome.at,
                            json.dumps(outcome.attempt.to_json()),
                            outcome.attempt.at,
                            now,
                            *key,
                        ),
                    )
                elif isinstance(outcome, Dead):
                    cur = db.execute(
                        "UPDATE submissions SET state = 'dead', lease_token = NULL,"
                        " attempts = attempts + 1, dead_reason = ?,"
                        " errors = json_insert(errors, '$[#]', json(?)), last_error_at = ?,"
                        f" updated_at = ? {guard}",
                        (
                            outcome.reason.value,
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
        with self._locked("releasing leases") as db:
            db.executemany(
                "UPDATE submissions SET state = 'pending', lease_token = NULL,"
                " next_attempt_at = updated_at, claims = max(claims - 1, 0)"
                " WHERE id = ? AND lease_token = ? AND state = 'leased'",
                [(c.submission.id, c.token) for c in claims],
            )

    def requeue(self, ids: Sequence[str] = (), *, dead: bool = False, now: float) -> int:
        """Make dead (or pending) items due now with a fresh attempt budget."""
        set_ = (
            "SET state = 'pending', attempts = 0, dead_reason = NULL,"
            " next_attempt_at = ?, updated_at = ?"
        )
        with self._locked("requeueing") as db:
            count = 0
            if dead:
                count += db.execute(
                    f"UPDATE submissions {set_} WHERE state = 'dead'", (now, now)
                ).rowcount
            for sid in ids:
                count += db.execute(
                    f"UPDATE submissions {set_} WHERE id = ? AND state IN ('dead', 'pending')",
                    (now, now, sid),
                ).rowcount
        return count

    # ------------------------------------------------------------------ reads

    def get(self, submission_id: str) -> Submission | None:
        """One submission by ID."""
        with self._locked("reading", write=False) as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM submissions WHERE id = ?", (submission_id,)
            ).fetchone()
        return submission_from_row(row) if row is not None else None

    def counts(self, *, now: float) -> QueueCounts:
        """Counts per state, what is due, and the last error."""
        with self._locked("counting", write=False) as db:
            by_state = {s.value: 0 for s in State}
            for state, n in db.execute("SELECT state, count(*) FROM submissions GROUP BY state"):
                by_state[state] = n
            due, oldest = db.execute(
                f"SELECT count(*), min(next_attempt_at) FROM submissions"
                f" WHERE {_OPEN} AND next_attempt_at <= ?",
                (now,),
            ).fetchone()
            (next_due,) = db.execute(
                "SELECT min(next_attempt_at) FROM submissions WHERE state = 'pending'"
            ).fetchone()
            last = db.execute(
                "SELECT id, json_extract(errors, '$[#-1]') FROM submissions"
                " WHERE last_error_at IS NOT NULL ORDER BY last_error_at DESC LIMIT 1"
            ).fetchone()
        last_error = (last[0], Attempt.from_json(json.loads(last[1]))) if last else None
        return QueueCounts(
            by_state=by_state,
            due=due,
            oldest_due_at=oldest,
            next_due_at=next_due,
            last_error=last_error,
        )

    def backends(self) -> list[QueueBackend]:
        """Every backend that has submissions."""
        with self._locked("reading backends", write=False) as db:
            rows = db.execute(
                "SELECT url, api_version, public_key, vkey FROM backends ORDER BY key"
            ).fetchall()
        return [QueueBackend(url=r[0], api_version=r[1], public_key=r[2], vkey=r[3]) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def list(
        self, *, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> list[Submission]:
        """Submissions, oldest first, optionally of one state."""
        where, args = ("WHERE state = ?", [state.value]) if state is not None else ("", [])
        with self._locked("listing", write=False) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM submissions {where}"
                " ORDER BY created_at, id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [submission_from_row(r) for r in rows]
