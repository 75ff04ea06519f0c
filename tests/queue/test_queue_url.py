"""One queue location wherever a queue is chosen: a SQLite file or a ``postgresql://`` URL
(``SubmissionQueue(...)``, ``rekorkit queue ... --queue``)."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from queue_requests import dsse, v1_backend
from rekorkit.cli import main
from rekorkit.queue import SQLiteQueueStorage, State, SubmissionQueue
from rekorkit.queue.postgres import PostgresQueueStorage
from rekorkit.testing import start_server


def test_a_postgres_url_opens_the_shared_queue_and_a_path_a_file(
    pg_url: str, tmp_path: Path
) -> None:
    with start_server() as srv:
        with SubmissionQueue(pg_url, validation_workers=1) as queue:
            assert isinstance(queue.storage, PostgresQueueStorage)
            ids = queue.enqueue_many([dsse(i) for i in range(3)], backend=v1_backend(srv))
        with SubmissionQueue(pg_url.replace("postgresql://", "postgres://")) as again:
            assert [again.get(i).state for i in ids] == [State.PENDING] * 3
        with SubmissionQueue(tmp_path / "q.sqlite") as local:
            assert isinstance(local.storage, SQLiteQueueStorage)
            assert local.status().total == 0  # a different queue


def test_queue_command_takes_a_postgres_url(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_server() as srv, SubmissionQueue(pg_url, validation_workers=1) as queue:
        ids = queue.enqueue_many([dsse(i) for i in range(4)], backend=v1_backend(srv))
        assert main(["queue", "status", "--queue", pg_url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["states"]["pending"] == 4
        assert main(["queue", "work", "--once", "--json", "--queue", pg_url]) == 0
        assert json.loads(capsys.readouterr().out)["done"] == 4
        assert {queue.get(i).state for i in ids} == {State.DONE}
        # The table names the database, never the password (trust auth ignores it).
        with_password = pg_url.replace("postgres@", "postgres:s3cret@")
        assert main(["queue", "status", "--queue", with_password]) == 0
        out = capsys.readouterr().out
        assert "s3cret" not in out and "dbname=" in out


def test_unreachable_postgres_queue_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2"
    assert main(["queue", "status", "--queue", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rekorkit queue status: ") and "Traceback" not in err
    assert "hunter2" not in err and "127.0.0.1" in err
