"""rekorkit.store.duckdb: verified entries, checkpoints, ranges and queries."""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest
from concurrently import in_threads
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.errors import DivergenceError, MalformedError, StoreError
from rekorkit.store import CheckpointStore, StoredCheckpoint
from rekorkit.store.duckdb import ROW_GROUP_ROWS, DuckDBStore, entry_batch

ORIGIN = "log.example/test"


def _jcs(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def hashedrekord(i: int) -> bytes:
    digest = hashlib.sha256(b"artifact %d" % i).hexdigest()
    return _jcs(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest}},
                "signature": {"content": "c2ln", "publicKey": {"content": "a2V5"}},
            },
        }
    )


def hashedrekord_v2(i: int) -> bytes:
    digest = base64.b64encode(hashlib.sha256(b"artifact %d" % i).digest()).decode()
    return _jcs(
        {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {"hashedRekordV002": {"data": {"algorithm": "SHA2_256", "digest": digest}}},
        }
    )


def leaf(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def batch(start: int, bodies: list[bytes], size: int, origin: str = ORIGIN) -> pa.RecordBatch:
    hashes = np.frombuffer(b"".join(leaf(b) for b in bodies), np.uint8).reshape(-1, 32)
    return entry_batch(origin, start, bodies, hashes, checkpoint_size=size)


def checkpoint(size: int, root: bytes = b"\x01" * 32, origin: str = ORIGIN) -> StoredCheckpoint:
    note = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n\n— {origin} AAAA\n".encode()
    return StoredCheckpoint(origin, size, root, note)


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "t.duckdb")
    yield s
    s.close()


def test_is_a_checkpoint_store(store: DuckDBStore) -> None:
    assert isinstance(store, CheckpointStore)


def test_commit_and_query_by_index_uuid_and_digest(store: DuckDBStore) -> None:
    bodies = [hashedrekord(i) for i in range(10)]
    assert (
        store.commit_entries(
            ORIGIN, [batch(0, bodies, 10)], start=0, end=10, checkpoint=checkpoint(10)
        )
        == 10
    )
    e = store.entry(ORIGIN, 7)
    assert e is not None
    assert e.body == bodies[7]
    assert e.leaf_hash == leaf(bodies[7])
    assert (e.kind, e.api_version) == ("hashedrekord", "0.0.1")
    assert e.checkpoint_size == 10
    assert e.integrated_time is None
    assert store.entry(ORIGIN, 10) is None
    assert store.entry("other", 7) is None
    assert [x.log_index for x in store.find_by_uuid(e.uuid)] == [7]
    assert [x.log_index for x in store.find_by_uuid("24296fb24b8ad77a" + e.uuid)] == [7]
    digest = hashlib.sha256(b"artifact 3").hexdigest()
    assert [x.log_index for x in store.find_by_digest(digest)] == [3]
    assert [x.log_index for x in store.find_by_digest("sha256:" + digest.upper())] == [3]
    assert store.find_by_digest("00" * 32) == []
    assert [x.log_index for x in store.entries(ORIGIN, 2, 5)] == [2, 3, 4]
    assert store.entries_table(ORIGIN, 0, 10).num_rows == 10


def test_digest_index_is_incremental_and_reads_v2_base64(store: DuckDBStore) -> None:
    store.commit_entries(ORIGIN, [batch(0, [hashedrekord(i) for i in range(4)], 4)], start=0, end=4)
    assert store.find_by_digest(hashlib.sha256(b"artifact 1").digest())[0].log_index == 1
    store.commit_entries(
        ORIGIN, [batch(4, [hashedrekord_v2(i) for i in range(4, 8)], 8)], start=4, end=8
    )
    found = store.find_by_digest(hashlib.sha256(b"artifact 6").hexdigest())
    assert [(x.log_index, x.api_version) for x in found] == [(6, "0.0.2")]
    assert store.refresh_digest_index() == 0  # nothing new since


def test_non_rekor_entries_have_no_kind(store: DuckDBStore) -> None:
    bodies = [b"one", b"\xff\x00binary", b"", b'{"apiVersion":"0.0.1"}']
    store.commit_entries(ORIGIN, [batch(0, bodies, 4)], start=0, end=4)
    got = store.entries(ORIGIN, 0, 4)
    assert [e.body for e in got] == bodies
    assert [e.kind for e in got] == [None] * 4
    assert store.find_by_digest("ab" * 32) == []


def test_ranges_merge_resume_and_gaps(store: DuckDBStore) -> None:
    assert store.last_verified_size(ORIGIN) == 0
    store.commit_entries(ORIGIN, [batch(0, [b"a"] * 5, 20)], start=0, end=5)
    store.commit_entries(ORIGIN, [batch(10, [b"b"] * 5, 20)], start=10, end=15)
    assert store.verified_ranges(ORIGIN) == [(0, 5), (10, 15)]
    assert store.missing_ranges(ORIGIN, 0, 20) == [(5, 10), (15, 20)]
    assert store.missing_ranges(ORIGIN, 2, 12) == [(5, 10)]
    assert store.missing_ranges(ORIGIN, 0, 5) == []
    assert store.last_verified_size(ORIGIN) == 15
    store.commit_entries(ORIGIN, [batch(5, [b"c"] * 5, 20)], start=5, end=10)
    assert store.verified_ranges(ORIGIN) == [(0, 15)]
    assert store.count(ORIGIN) == 15
    assert store.count() == 15
    summary = store.origins()
    assert [(o.origin, o.entries, o.verified_size) for o in summary] == [(ORIGIN, 15, 15)]


def test_overlap_and_mismatched_batches_are_refused_and_store_nothing(store: DuckDBStore) -> None:
    store.commit_entries(ORIGIN, [batch(0, [b"a"] * 5, 5)], start=0, end=5)
    with pytest.raises(StoreError, match="overlaps"):
        store.commit_entries(
            ORIGIN, [batch(3, [b"a"] * 4, 7)], start=3, end=7, checkpoint=checkpoint(7)
        )
    assert store.latest_checkpoint(ORIGIN) is None  # the checkpoint rolled back with the entries
    with pytest.raises(StoreError, match="rows for the range"):
        store.commit_entries(ORIGIN, [batch(5, [b"a"] * 2, 7)], start=5, end=8)
    with pytest.raises(StoreError, match="not consecutive"):
        store.commit_entries(ORIGIN, [batch(6, [b"a"] * 2, 8)], start=5, end=7)
    with pytest.raises(StoreError, match="another origin"):
        store.commit_entries(ORIGIN, [batch(5, [b"a"] * 2, 8, origin="x")], start=5, end=7)
    with pytest.raises(StoreError):
        store.commit_entries(ORIGIN, [], start=5, end=4)
    assert store.count() == 5
    assert store.verified_ranges(ORIGIN) == [(0, 5)]


def test_failed_transaction_leaves_nothing(store: DuckDBStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as con:
        con.execute("INSERT INTO verified_ranges VALUES ('x', 0, 1, 1, now())")
        raise RuntimeError("boom")
    assert store.verified_ranges("x") == []


def test_checkpoints_store_and_refuse_a_fork(store: DuckDBStore) -> None:
    assert store.add_checkpoint(checkpoint(5)) is True
    assert store.add_checkpoint(checkpoint(5)) is False  # seen again
    assert store.add_checkpoint(checkpoint(9, b"\x02" * 32)) is True
    latest = store.latest_checkpoint(ORIGIN)
    assert latest is not None
    assert (latest.size, latest.root_hash) == (9, b"\x02" * 32)
    assert latest.note.startswith(ORIGIN.encode())
    assert latest.first_seen is not None and latest.last_seen is not None
    assert latest.first_seen.tzinfo is not None
    assert [c.size for c in store.checkpoints(ORIGIN)] == [5, 9]
    cp5 = store.checkpoint(ORIGIN, 5)
    assert cp5 is not None and cp5.last_seen is not None and cp5.first_seen is not None
    assert cp5.last_seen >= cp5.first_seen
    with pytest.raises(DivergenceError) as info:
        store.add_checkpoint(checkpoint(5, b"\x03" * 32))
    assert info.value.evidence["old_root"] == (b"\x01" * 32).hex()
    assert info.value.evidence["new_root"] == (b"\x03" * 32).hex()
    assert store.checkpoint(ORIGIN, 5) == cp5
    assert store.checkpoint(ORIGIN, 6) is None
    assert store.latest_checkpoint("nobody") is None


def test_reopen_keeps_everything(tmp_path) -> None:
    path = tmp_path / "r.duckdb"
    with DuckDBStore(path) as s:
        s.commit_entries(
            ORIGIN, [batch(0, [b"x"] * 3, 3)], start=0, end=3, checkpoint=checkpoint(3)
        )
    with DuckDBStore(path) as s:
        assert s.last_verified_size(ORIGIN) == 3
        assert s.latest_checkpoint(ORIGIN) == checkpoint(3).__class__(
            ORIGIN,
            3,
            b"\x01" * 32,
            checkpoint(3).note,
            s.checkpoints(ORIGIN)[0].first_seen,
            s.checkpoints(ORIGIN)[0].last_seen,
        )
    with DuckDBStore(path, read_only=True) as s:
        assert s.count(ORIGIN) == 3


def test_bad_queries_raise_malformed(store: DuckDBStore) -> None:
    with pytest.raises(MalformedError):
        store.find_by_uuid("abc")
    with pytest.raises(MalformedError):
        store.find_by_uuid("zz" * 32)
    with pytest.raises(MalformedError):
        store.find_by_digest("sha256:not-hex")


def test_entry_batch_checks_lengths() -> None:
    with pytest.raises(MalformedError):
        entry_batch(ORIGIN, 0, [b"a", b"b"], np.zeros((1, 32), np.uint8), checkpoint_size=2)
    with pytest.raises(MalformedError):
        entry_batch(
            ORIGIN,
            0,
            [b"a"],
            np.zeros((1, 32), np.uint8),
            checkpoint_size=2,
            log_index=np.arange(2),
        )


def test_v1_fields_round_trip(store: DuckDBStore) -> None:
    bodies = [hashedrekord(i) for i in range(3)]
    hashes = np.frombuffer(b"".join(leaf(b) for b in bodies), np.uint8).reshape(-1, 32)
    b = entry_batch(
        ORIGIN,
        0,
        bodies,
        hashes,
        checkpoint_size=3,
        integrated_time=[100, 101, 102],
        global_index=np.array([1000, 1001, 1002]),
    )
    store.commit_entries(ORIGIN, [b], start=0, end=3)
    e = store.find_by_global_index(1001)
    assert [(x.log_index, x.integrated_time) for x in e] == [(1, 101)]


def test_whole_row_groups_go_in_one_commit(store: DuckDBStore) -> None:
    n = ROW_GROUP_ROWS
    bodies = pa.array([b"e%d" % i for i in range(n)], type=pa.binary())
    hashes = np.zeros((n, 32), np.uint8)
    store.commit_entries(
        ORIGIN, [entry_batch(ORIGIN, 0, bodies, hashes, checkpoint_size=n)], start=0, end=n
    )
    assert store.count(ORIGIN) == n
    last = store.entry(ORIGIN, n - 1)
    assert last is not None and last.body == b"e%d" % (n - 1)


def test_concurrent_readers_and_writer(store: DuckDBStore) -> None:
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            store.commit_entries(
                ORIGIN, [batch(k * 10, [b"w"] * 10, 100)], start=k * 10, end=k * 10 + 10
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    in_threads(write, range(5))
    assert errors == []
    assert store.verified_ranges(ORIGIN) == [(0, 50)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 10)), max_size=8),
    st.integers(0, 40),
    st.integers(0, 60),
)
def test_missing_ranges_property(tmp_path_factory, spans, lo, hi) -> None:
    """missing plus stored covers [lo, hi) exactly, and missing never overlaps stored."""
    s = DuckDBStore(":memory:")
    covered: set[int] = set()
    for start, length in spans:
        rng = set(range(start, start + length))
        if rng & covered:
            continue
        s.commit_entries(
            ORIGIN, [batch(start, [b"z"] * length, 100)], start=start, end=start + length
        )
        covered |= rng
    missing: set[int] = set()
    for a, b in s.missing_ranges(ORIGIN, lo, hi):
        assert a < b
        missing |= set(range(a, b))
    want = set(range(lo, hi))
    assert missing == want - covered
    ranges = s.verified_ranges(ORIGIN)
    assert all(ranges[i][1] < ranges[i + 1][0] for i in range(len(ranges) - 1))  # merged
    s.close()
