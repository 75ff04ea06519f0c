"""OrderedCommitter: gathered commits in order, gaps and origins split, row-group alignment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from rekorkit.audit.committer import OrderedCommitter
from rekorkit.audit.v1_reads import COMMIT


@dataclass
class Rows:
    num_rows: int


class Store:
    def __init__(self) -> None:
        self.commits: list[tuple[str, int, int, int]] = []

    def commit_entries(
        self, origin: str, batches: list[Any], *, start: int, end: int, checkpoint: Any = None
    ) -> int:
        self.commits.append((origin, start, end, len(batches)))
        return end - start


def test_consecutive_windows_are_gathered() -> None:
    store = Store()

    async def main() -> OrderedCommitter:
        ordered = OrderedCommitter(store, commit_rows=COMMIT)  # type: ignore[arg-type]
        for a in range(0, COMMIT + 1024, 512):  # consecutive: gathered up to COMMIT
            await ordered.add("o", a, Rows(512))
        await ordered.add("o", 10_000, Rows(100))  # a gap: a new transaction
        await ordered.add("p", 10_100, Rows(100))  # another origin: another one
        await ordered.close()
        return ordered

    ordered = asyncio.run(main())
    assert store.commits == [
        ("o", 0, COMMIT, COMMIT // 512),
        ("o", COMMIT, COMMIT + 1024, 2),
        ("o", 10_000, 10_100, 1),
        ("p", 10_100, 10_200, 1),
    ]
    assert ordered.stored == COMMIT + 1024 + 200
    nothing = OrderedCommitter(None, commit_rows=COMMIT)

    async def count_only() -> None:
        await nothing.add("o", 0, Rows(5))
        await nothing.close()

    asyncio.run(count_only())
    assert nothing.stored == 0


def test_aligned_commits_whole_row_groups_and_keep_the_rest() -> None:
    store = Store()
    seen: list[list[int]] = []

    class Recording(Store):
        def commit_entries(self, origin: str, batches: list[Any], **kw: Any) -> int:
            seen.append([i for b in batches for i in b.column("i").to_pylist()])
            return super().commit_entries(origin, batches, **kw)

    store = Recording()

    async def main() -> None:
        ordered = OrderedCommitter(store, commit_rows=4, aligned=True)  # type: ignore[arg-type]
        for a in range(0, 9, 3):
            await ordered.add("o", a, pa.record_batch({"i": list(range(a, a + 3))}))
        await ordered.close()

    asyncio.run(main())
    # 3 rows wait; 6 rows: 4 committed, 2 kept; 5 rows: 4 committed, 1 kept; close: 1.
    assert [c[1:3] for c in store.commits] == [(0, 4), (4, 8), (8, 9)]
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
