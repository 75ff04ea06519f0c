"""The store contract, run against DuckDB and a real PostgreSQL (the same tests on both)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit.errors import DivergenceError, MalformedError, StoreError, WriterConflictError
from rekorkit.store import CheckpointStore, EntryStore, missing_ranges
from rekorkit.store.duckdb import DuckDBStore
from rekorkit.store.open import is_postgres_url, open_store
from rekorkit.store.postgres import PostgresStore
from test_store_duckdb import ORIGIN, batch, checkpoint, hashedrekord, hashedrekord_v2, leaf

Store = DuckDBStore | PostgresStore


@pytest.fixture(params=["duckdb", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "t.duckdb")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(location: str) -> Iterator[Store]:
    s = open_store(location)
    yield s
    s.close()


def test_open_store_picks_the_backend(location: str, store: Store) -> None:
    want = PostgresStore if is_postgres_url(location) else DuckDBStore
    assert isinstance(store, want)
    assert isinstance(store, CheckpointStore) and isinstance(store, EntryStore)


def test_commit_and_every_lookup(store: Store) -> None:
    bodies = [hashedrekord(i) for i in range(6)] + [hashedrekord_v2(i) for i in range(6, 10)]
    assert store.commit_entries(
        ORIGIN, [batch(0, bodies[:4], 10), batch(4, bodies[4:], 10)], start=0, end=10,
        checkpoint=checkpoint(10),
    ) == 10  # fmt: skip
    e = store.entry(ORIGIN, 7)
    assert e is not None and e.body == bodies[7] and e.leaf_hash == leaf(bodies[7])
    assert (e.kind, e.api_version, e.checkpoint_size) == ("hashedrekord", "0.0.2", 10)
    assert store.entry(ORIGIN, 10) is None
    assert [x.log_index for x in store.find_by_uuid(e.uuid)] == [7]
    assert [x.log_index for x in store.find_by_uuid("24296fb24b8ad77a" + e.uuid)] == [7]
    digest = hashlib.sha256(b"artifact 3").hexdigest()
    assert [x.log_index for x in store.find_by_digest("sha256:" + digest.upper())] == [3]
    assert [x.log_index for x in store.find_by_digest(hashlib.sha256(b"artifact 8").digest())] == [
        8
    ]
    assert store.refresh_digest_index() == 0
    assert [x.log_index for x in store.entries(ORIGIN, 2, 5)] == [2, 3, 4]
    table = store.entries_table(ORIGIN, 3, 6)
    assert table.column("log_index").to_pylist() == [3, 4, 5]
    assert table.column("body").to_pylist() == bodies[3:6]
    picked = store.entries_at(ORIGIN, [8, 1, 8, 42])  # any order, repeats, a missing index
    assert picked.column("log_index").to_pylist() == [1, 8]
    assert picked.column("body").to_pylist() == [bodies[1], bodies[8]]
    assert store.entries_at(ORIGIN, []).num_rows == 0
    [summary] = store.origins()
    assert (summary.entries, summary.verified_size, summary.checkpoint_size) == (10, 10, 10)


def test_non_rekor_bodies_and_v1_fields(store: Store) -> None:
    import numpy as np
    from rekorkit.store.duckdb import entry_batch

    bodies = [b"one", b"\xff\x00binary\\", b"", b'{"apiVersion":"0.0.1"}']
    hashes = np.frombuffer(b"".join(leaf(b) for b in bodies), np.uint8).reshape(-1, 32)
    b = entry_batch(
        ORIGIN, 0, bodies, hashes, checkpoint_size=4, integrated_time=[100, None, 102, 103],
        global_index=np.array([1000, 1001, 1002, 1003]),
    )  # fmt: skip
    store.commit_entries(ORIGIN, [b], start=0, end=4)
    got = store.entries(ORIGIN, 0, 4)
    assert [x.body for x in got] == bodies
    assert [x.kind for x in got] == [None] * 4
    assert [x.integrated_time for x in got] == [100, None, 102, 103]
    assert [x.log_index for x in store.find_by_global_index(1002)] == [2]
    assert store.find_by_digest("ab" * 32) == []


def test_ranges_merge_and_gaps(store: Store) -> None:
    store.commit_entries(ORIGIN, [batch(0, [b"a"] * 5, 20)], start=0, end=5)
    store.commit_entries(ORIGIN, [batch(10, [b"b"] * 5, 20)], start=10, end=15)
    assert store.verified_ranges(ORIGIN) == [(0, 5), (10, 15)]
    assert store.missing_ranges(ORIGIN, 0, 20) == [(5, 10), (15, 20)]
    assert store.last_verified_size(ORIGIN) == 15
    store.commit_entries(ORIGIN, [batch(5, [b"c"] * 5, 20)], start=5, end=10)
    assert store.verified_ranges(ORIGIN) == [(0, 15)]
    assert store.count(ORIGIN) == store.count() == 15


def test_overlap_and_bad_batches_store_nothing(store: Store) -> None:
    store.commit_entries(ORIGIN, [batch(0, [b"a"] * 5, 5)], start=0, end=5)
    with pytest.raises(WriterConflictError, match="overlaps") as info:
        store.commit_entries(
            ORIGIN, [batch(3, [b"a"] * 4, 7)], start=3, end=7, checkpoint=checkpoint(7)
        )
    assert isinstance(info.value, StoreError)  # callers catching StoreError still do
    assert info.value.evidence == {"origin": ORIGIN, "range": [3, 7], "stored": [0, 5]}
    assert store.latest_checkpoint(ORIGIN) is None  # rolled back with the entries
    with pytest.raises(StoreError, match="rows for the range"):
        store.commit_entries(ORIGIN, [batch(5, [b"a"] * 2, 7)], start=5, end=8)
    with pytest.raises(StoreError, match="not consecutive"):
        store.commit_entries(ORIGIN, [batch(6, [b"a"] * 2, 8)], start=5, end=7)
    with pytest.raises(StoreError, match="another origin"):
        store.commit_entries(ORIGIN, [batch(5, [b"a"] * 2, 8, origin="x")], start=5, end=7)
    assert store.count() == 5 and store.verified_ranges(ORIGIN) == [(0, 5)]


def test_checkpoints_and_a_fork(store: Store) -> None:
    assert store.add_checkpoint(checkpoint(5)) is True
    assert store.add_checkpoint(checkpoint(5)) is False
    assert store.add_checkpoint(checkpoint(9, b"\x02" * 32)) is True
    latest = store.latest_checkpoint(ORIGIN)
    assert latest is not None and (latest.size, latest.root_hash) == (9, b"\x02" * 32)
    assert latest.first_seen is not None and latest.first_seen.tzinfo is not None
    assert [c.size for c in store.checkpoints(ORIGIN)] == [5, 9]
    with pytest.raises(DivergenceError) as info:
        store.add_checkpoint(checkpoint(5, b"\x03" * 32))
    assert info.value.evidence["new_root"] == (b"\x03" * 32).hex()
    assert store.checkpoint(ORIGIN, 6) is None and store.latest_checkpoint("nobody") is None


def test_reopen_keeps_everything(location: str) -> None:
    with open_store(location) as s:
        cp = checkpoint(3)
        s.commit_entries(ORIGIN, [batch(0, [b"x"] * 3, 3)], start=0, end=3, checkpoint=cp)
    with open_store(location) as s:  # migrations already applied: nothing re-run
        assert s.last_verified_size(ORIGIN) == 3
    with open_store(location, read_only=True) as s:
        assert s.count(ORIGIN) == 3
        cp = s.latest_checkpoint(ORIGIN)
        assert cp is not None and cp.root_hash == b"\x01" * 32


def test_bad_queries_raise_malformed(store: Store) -> None:
    for bad in ("abc", "zz" * 32):
        with pytest.raises(MalformedError):
            store.find_by_uuid(bad)
    with pytest.raises(MalformedError):
        store.find_by_digest("sha256:not-hex")


@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 10)), max_size=8),
    st.integers(0, 70),
    st.integers(0, 80),
)
def test_missing_ranges_is_the_complement_of_the_stored_ones(
    spans: list[tuple[int, int]], lo: int, hi: int
) -> None:
    stored: list[tuple[int, int]] = []
    covered: set[int] = set()
    for start, length in sorted(spans):
        if covered & set(range(start, start + length)):
            continue
        stored.append((start, start + length))
        covered |= set(range(start, start + length))
    gaps = missing_ranges(stored, lo, hi)
    assert all(a < b for a, b in gaps)
    assert all(gaps[i][1] < gaps[i + 1][0] for i in range(len(gaps) - 1))
    assert {i for a, b in gaps for i in range(a, b)} == set(range(lo, hi)) - covered


def test_sightings_and_an_atomic_frontier(store: Store) -> None:
    assert store.frontier(ORIGIN) is None
    cp = checkpoint(4)
    with pytest.raises(StoreError, match="not all stored"):
        store.advance_frontier(cp, start=0, source="https://log.example")
    assert store.frontier(ORIGIN) is None and store.latest_checkpoint(ORIGIN) is None
    store.commit_entries(ORIGIN, [batch(0, [b"a"] * 4, 4)], start=0, end=4)
    store.advance_frontier(cp, start=0, source="https://log.example")
    store.record_sighting(cp, source="https://mirror.example")
    found = store.frontier(ORIGIN)
    assert found is not None and found[0] == 0 and found[1].size == 4 and found[1].note == cp.note
    seen = store.sightings(ORIGIN)
    assert [(s, r, src) for s, r, src, _, _ in seen] == [
        (4, cp.root_hash, "https://log.example"),
        (4, cp.root_hash, "https://mirror.example"),
    ]
    with pytest.raises(StoreError, match="cannot move back"):
        store.advance_frontier(checkpoint(2), start=0, source="https://log.example")
    with pytest.raises(DivergenceError):  # same size, another root: a fork, nothing advances
        store.advance_frontier(checkpoint(4, b"\x09" * 32), start=4, source="https://x.example")
    assert [s for s, *_ in store.sightings(ORIGIN)] == [4, 4]
