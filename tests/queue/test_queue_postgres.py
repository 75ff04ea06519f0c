"""PostgresQueueStorage: the queue's storage tests on a real PostgreSQL, claims by
``FOR UPDATE SKIP LOCKED`` from racing sessions, and two workers draining one queue."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from concurrently import in_threads
from pg import PostgresServer, pg_server, pg_url  # noqa: F401  (fixtures)
from queue_requests import dsse, hashedrekord_v2, v1_backend, v2_backend
from rekorkit.errors import StoreError
from rekorkit.queue import QueueStorage, State, SubmissionQueue, SubmissionWorker
from rekorkit.queue.postgres import MIGRATIONS, PostgresQueueStorage
from rekorkit.testing import start_server

# The SQLite module's tests that run through the ``queue`` fixture: the same
# assertions, here on PostgreSQL (the fixture below replaces the SQLite one).
from test_queue_storage import (  # noqa: F401  (collected by pytest)
    V1,
    Clock,
    test_a_stale_worker_cannot_overwrite_a_newer_claim,
    test_backends_are_stored_with_their_keys,
    test_batch_enqueue_is_one_transaction_in_input_order,
    test_claims_lease_due_items_and_expired_leases_come_back,
    test_enqueue_computes_leaf_hash_and_id_before_sending,
    test_malformed_requests_are_refused_precisely,
    test_outcomes_keep_the_whole_error_history,
    test_release_gives_items_back_without_an_attempt,
    test_same_entry_twice_is_one_submission,
    test_storage_is_the_protocol,
    test_unknown_id,
    test_v2_requests_are_validated_as_v2,
    test_wrongly_signed_request_is_refused_and_nothing_queued,
)


@pytest.fixture
def queue(pg_url: str) -> Iterator[SubmissionQueue]:
    with SubmissionQueue(PostgresQueueStorage(pg_url), clock=Clock()) as q:
        yield q


def test_is_the_storage_protocol_and_durable_across_reopen(pg_url: str) -> None:
    with SubmissionQueue(PostgresQueueStorage(pg_url)) as q:
        assert isinstance(q.storage, QueueStorage)
        sid = q.enqueue(dsse(1), backend=V1)
    with SubmissionQueue(PostgresQueueStorage(pg_url)) as q:  # migrations run once
        sub = q.get(sid)
        assert sub.state == State.PENDING and sub.backend == V1.key
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT version FROM queue_schema_migrations").fetchall() == [(1,)]


def test_racing_claims_never_lease_one_item_twice(pg_url: str) -> None:
    with SubmissionQueue(PostgresQueueStorage(pg_url)) as q:
        ids = q.enqueue_many([dsse(i) for i in range(40)], backend=V1)
    stores = [PostgresQueueStorage(pg_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    got: list[list[str]] = [[] for _ in stores]

    def claim(k: int) -> None:
        barrier.wait()
        for _ in range(20):  # bounded: 4 claimers x 20 rounds of 3 > 40 items
            claims = stores[k].claim(limit=3, lease=60, now=2e9)
            got[k] += [c.submission.id for c in claims]

    in_threads(claim, range(len(stores)))
    for s in stores:
        s.close()
    claimed = [sid for ids_k in got for sid in ids_k]
    assert sorted(claimed) == sorted(ids)  # every item once: none twice, none lost
    assert sum(1 for ids_k in got if ids_k) >= 2  # the claimers really shared the work


def test_newer_schema_and_unreachable_server_are_clear_errors(pg_url: str) -> None:
    PostgresQueueStorage(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("INSERT INTO queue_schema_migrations VALUES (%s, now())", [99])
    with pytest.raises(StoreError, match="schema version 99"):
        PostgresQueueStorage(pg_url)
    assert MIGRATIONS[-1][0] == 1
    with pytest.raises(StoreError, match="cannot open PostgreSQL queue"):
        PostgresQueueStorage("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)


def test_two_workers_on_one_database_no_duplicate_no_loss(pg_url: str) -> None:
    with start_server() as srv:
        with SubmissionQueue(PostgresQueueStorage(pg_url)) as q:
            ids = q.enqueue_many([dsse(i) for i in range(30)], backend=v1_backend(srv))
            ids += q.enqueue_many([hashedrekord_v2(i) for i in range(30)], backend=v2_backend(srv))
        reports: list[object] = []

        def work() -> None:
            with SubmissionQueue(PostgresQueueStorage(pg_url)) as own:
                worker = SubmissionWorker(own, lease=30, poll_interval=0.05, concurrency=4)
                reports.append(asyncio.run(worker.run(once=True, handle_signals=False)))

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(reports) == 2
        assert httpx.get(srv.url + "/healthz").json()["size"] == 60  # each entry logged once
    done = [getattr(r, "done") for r in reports]  # noqa: B009
    assert sum(done) == 60  # no submission processed by both workers
    with SubmissionQueue(PostgresQueueStorage(pg_url)) as q:
        subs = [q.get(sid) for sid in ids]
    assert all(s.state == State.DONE and s.receipt is not None for s in subs)  # none lost
    assert sorted(s.log_index for s in subs) == list(range(60))  # one tree, no gaps, no repeats
