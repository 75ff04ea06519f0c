"""read_windows: order, read-ahead bound, failures in turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Sequence

import pytest
from client_fakes import FakeV1Log
from rekorkit.audit.v1_reads import AHEAD, read_windows
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.errors import NotFoundError

FAKE = FakeV1Log()
for _i in range(120):
    FAKE.add(json.dumps({"n": _i}).encode())
ROWS = LogEntryColumns.from_json([FAKE.entry(i) for i in range(120)])


class Client:
    """Answers get_entry_columns from ROWS after a random delay, recording each request."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.asked: list[int] = []
        self.fail_at = fail_at

    async def get_entry_columns(self, indices: Sequence[int]) -> LogEntryColumns:
        first = indices[0]
        self.asked.append(first)
        await asyncio.sleep(random.random() / 1000)
        if self.fail_at is not None and self.fail_at in indices:
            raise NotFoundError(f"no entries at indices [{self.fail_at}]", status=404)
        return ROWS.take(list(indices))


def test_windows_come_in_order_and_read_ahead_is_bounded() -> None:
    random.seed(3)
    spans = [(a, min(100, a + 15)) for a in range(0, 100, 15)]
    client = Client()

    async def main() -> list[tuple[int, int, list[int]]]:
        out = []
        async for a, b, cols in read_windows(client, spans, 5, concurrency=4):  # type: ignore[arg-type]
            # Nothing past the next AHEAD windows has been asked for yet.
            limit = spans[min(len(spans) - 1, len(out) + AHEAD)][1] + 5
            assert max(client.asked) < limit
            out.append((a, b, cols.log_indexes.tolist()))
            await asyncio.sleep(0.002)
        return out

    got = asyncio.run(main())
    assert [(a, b) for a, b, _ in got] == spans
    for a, b, idx in got:
        assert idx == list(range(a + 5, b + 5))  # the offset maps span to log indices
    assert sorted(client.asked) == sorted(set(client.asked))  # each request made once


def test_a_failed_read_is_raised_after_the_windows_before_it() -> None:
    spans = [(a, a + 20) for a in range(0, 100, 20)]
    client = Client(fail_at=47)
    seen: list[int] = []

    async def main() -> None:
        async for a, _, _ in read_windows(client, spans, 0, concurrency=8):  # type: ignore[arg-type]
            seen.append(a)

    with pytest.raises(NotFoundError, match="47"):
        asyncio.run(main())
    assert seen == [0, 20]


def test_stopping_early_cancels_the_readers() -> None:
    spans = [(a, a + 10) for a in range(0, 100, 10)]  # one request a window
    client = Client()

    async def main() -> tuple[int, int]:
        windows = read_windows(client, spans, 0, concurrency=3)  # type: ignore[arg-type]
        async with contextlib.aclosing(windows):
            async for a, _, _ in windows:
                if a == 20:
                    break
        asked = len(client.asked)
        await asyncio.sleep(0.01)
        return asked, len(client.asked)

    asked, later = asyncio.run(main())
    assert asked <= 3 + AHEAD  # windows 0-2 and the read-ahead, no more
    assert later == asked  # the readers are gone
