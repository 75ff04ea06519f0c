"""LogEntryColumns: the one-pass reader agrees with LogEntry, and bad input names the field."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import numpy as np
import pytest
from client_fakes import FakeV1Log
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.entries import LogEntry
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.errors import MalformedError


@functools.cache
def shared_fake() -> FakeV1Log:
    log = FakeV1Log()
    for i in range(12):
        log.add(json.dumps({"n": i, "pad": "x" * i}).encode())
    return log


@pytest.fixture
def fake() -> FakeV1Log:
    return shared_fake()


def items(fake: FakeV1Log, indices: list[int]) -> list[dict[str, Any]]:
    return [fake.entry(i) for i in indices]


def same(a: LogEntryColumns, b: LogEntryColumns) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        assert a.entry(i) == b.entry(i)
    np.testing.assert_array_equal(a.proof_offsets, b.proof_offsets)
    np.testing.assert_array_equal(a.proof_hashes, b.proof_hashes)


def test_fast_reader_equals_entry_by_entry(fake: FakeV1Log) -> None:
    raw = items(fake, [3, 0, 11, 7])
    cols = LogEntryColumns.from_json(raw)
    entries = [LogEntry.from_json(r) for r in raw]
    assert [cols.entry(i) for i in range(len(cols))] == entries
    same(cols, LogEntryColumns.from_entries(entries))
    assert cols.log_indexes.tolist() == [3, 0, 11, 7]
    assert cols.uuids.tobytes().hex() == "".join(e.uuid for e in entries)
    assert repr(cols) == "<LogEntryColumns of 4 entries>"
    # Several {id: entry} pairs in one object are several rows.
    merged = {k: v for r in raw for k, v in r.items()}
    same(LogEntryColumns.from_json([merged]), cols)


def test_entries_without_proof_or_set_take_the_exact_path(fake: FakeV1Log) -> None:
    raw = items(fake, [1, 2])
    del raw[0][next(iter(raw[0]))]["verification"]
    del raw[1][next(iter(raw[1]))]["verification"]["signedEntryTimestamp"]
    cols = LogEntryColumns.from_json(raw)
    assert cols.has_proof.tolist() == [False, True]
    assert cols.checkpoints[0] is None and cols.sets == [None, None]
    assert cols.proof_offsets.tolist()[:2] == [0, 0]


def test_take_and_concat(fake: FakeV1Log) -> None:
    a = LogEntryColumns.from_json(items(fake, [0, 1, 2]))
    b = LogEntryColumns.from_json(items(fake, [5, 9]))
    both = LogEntryColumns.concat([a, b])
    assert both.log_indexes.tolist() == [0, 1, 2, 5, 9]
    picked = both.take([4, 0, 4, 2])
    assert [picked.entry(i) for i in range(4)] == [
        both.entry(4),
        both.entry(0),
        both.entry(4),
        both.entry(2),
    ]
    empty = LogEntryColumns.concat([])
    assert len(empty) == 0 and empty.proof_hashes.shape == (0, 32)
    assert len(LogEntryColumns.from_json([])) == 0


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda e: e.update(body="not base64!"), "body"),
        (lambda e: e.update(logIndex=True), "logIndex"),
        (lambda e: e.update(integratedTime=-1), "integratedTime"),
        (lambda e: e.update(logID="zz" * 32), "logID"),
        (lambda e: e["verification"]["inclusionProof"].update(treeSize="5"), "treeSize"),
        (lambda e: e["verification"]["inclusionProof"]["hashes"].append("ab"), "inclusionProof"),
        (lambda e: e["verification"]["inclusionProof"]["hashes"].append(7), "hashes[4]"),
        (lambda e: e["verification"]["inclusionProof"].update(rootHash="00" * 31), "inclusion"),
        (lambda e: e["verification"].update(signedEntryTimestamp=5), "signedEntryTimestamp"),
        (lambda e: e["verification"]["inclusionProof"].update(checkpoint=3), "checkpoint"),
    ],
)
def test_bad_fields_are_named(fake: FakeV1Log, edit: Any, where: str) -> None:
    raw = copy.deepcopy(items(fake, [4, 6]))
    edit(next(iter(raw[1].values())))
    with pytest.raises(MalformedError) as info:
        LogEntryColumns.from_json(raw, source="response from x")
    assert where in f"{info.value} {info.value.where}"
    assert "response from x" in str(info.value)


def test_bad_items_are_named(fake: FakeV1Log) -> None:
    for raw in ([items(fake, [1])[0], []], [items(fake, [1])[0], {}], [5]):
        with pytest.raises(MalformedError, match=r"item \d"):
            LogEntryColumns.from_json(raw, source="response from x")
    bad_id = {"xyz": next(iter(items(fake, [1])[0].values()))}
    with pytest.raises(MalformedError, match="entry ID"):
        LogEntryColumns.from_json([bad_id])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=3))
def test_random_json_only_raises_malformed(raw: list[Any]) -> None:
    try:
        cols = LogEntryColumns.from_json(raw)
    except MalformedError as exc:
        assert exc.what == "log entry" and str(exc)
    else:
        assert len(cols) == sum(len(item) for item in raw)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_entries_only_raise_malformed(data: st.DataObject) -> None:
    log = shared_fake()
    raw = copy.deepcopy(items(log, [0, 1]))
    inner = next(iter(raw[data.draw(st.integers(0, 1))].values()))
    path = data.draw(
        st.sampled_from(
            [
                ("body",),
                ("integratedTime",),
                ("logID",),
                ("logIndex",),
                ("verification",),
                ("verification", "inclusionProof"),
                ("verification", "inclusionProof", "hashes"),
                ("verification", "inclusionProof", "logIndex"),
                ("verification", "signedEntryTimestamp"),
            ]
        )
    )
    target = inner
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_values)
    try:
        cols = LogEntryColumns.from_json(raw)
    except MalformedError:
        return
    assert len(cols) == 2
