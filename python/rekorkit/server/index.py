"""DuckDB index from leaf hash to log index, for lookups and de-duplication.

Only the first 8 bytes of each leaf hash are stored (as a BIGINT) beside the
index and the integration time: that keeps bulk inserts cheap (one Arrow
append per batch) and the table small. A prefix match is a candidate only;
callers confirm it against the leaf hash in the level-0 tile, so a 64-bit
prefix collision can never return the wrong entry.

Almost every submission is new, and a DuckDB lookup is a column scan that
grows with the log (about 12 ms per batch at a million entries). So a
one-hash Bloom filter (a bit array of at least 16 bits per entry, resized as
the log grows) answers "certainly absent" for most leaf hashes in memory,
and only the hits go to DuckDB.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from rekorkit.errors import StoreError

__all__ = ["EntryIndex"]


def hash_prefixes(leaf_hashes: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each (n, 32) leaf hash as big-endian signed int64."""
    arr = np.ascontiguousarray(leaf_hashes, dtype=np.uint8).reshape(-1, 32)
    return arr[:, :8].copy().view(">i8").ravel().astype(np.int64)


class EntryIndex:
    """The ``entries(prefix, idx, integrated_time)`` table in a DuckDB file.

    Thread-safe: one connection guarded by a lock (the integrator writes,
    request handlers read, and neither holds it long).

    Args:
        path: the DuckDB file (``":memory:"`` for throwaway logs).
    """

    def __init__(self, path: Path | str):
        try:
            self._con = duckdb.connect(str(path))
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS entries "
                "(prefix BIGINT NOT NULL, idx BIGINT NOT NULL, integrated_time BIGINT NOT NULL)"
            )
        except duckdb.Error as exc:
            raise StoreError(f"cannot open index {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._bits = np.zeros(0, dtype=np.uint8)
        self._rows = 0
        self._rebuild_filter()

    # -- the in-memory filter ----------------------------------------------------
    def _rebuild_filter(self, extra: int = 0) -> None:
        """Size the filter for the current rows (plus ``extra``) and refill it from DuckDB."""
        rows = self._con.execute("SELECT count(*) FROM entries").fetchall()[0]
        self._rows = int(rows[0]) if rows else 0
        nbits = 1 << 20
        while nbits < 16 * (self._rows + extra):
            nbits <<= 1
        self._bits = np.zeros(nbits // 8, dtype=np.uint8)
        prefixes = self._con.execute("SELECT prefix FROM entries").fetchnumpy()["prefix"]
        self._set_bits(np.asarray(prefixes, dtype=np.int64))

    def _positions(self, prefixes: np.ndarray) -> np.ndarray:
        return prefixes.view(np.uint64) & np.uint64(len(self._bits) * 8 - 1)

    def _set_bits(self, prefixes: np.ndarray) -> None:
        pos = self._positions(prefixes)
        np.bitwise_or.at(
            self._bits,
            (pos >> np.uint64(3)).astype(np.intp),
            (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)),
        )

    def _maybe_present(self, prefixes: np.ndarray) -> np.ndarray:
        pos = self._positions(prefixes)
        byte = self._bits[(pos >> np.uint64(3)).astype(np.intp)]
        return ((byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1).astype(bool)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._con.close()

    def add(self, start: int, leaf_hashes: np.ndarray, integrated_times: np.ndarray | int) -> None:
        """Record leaves ``start .. start+n`` with their integration times (one insert)."""
        prefixes = hash_prefixes(leaf_hashes)
        n = len(prefixes)
        if n == 0:
            return
        self._add_rows(start, prefixes, integrated_times)
        with self._lock:
            self._rows += n
            if 16 * self._rows > len(self._bits) * 8:
                self._rebuild_filter()
            else:
                self._set_bits(prefixes)

    def _add_rows(
        self, start: int, prefixes: np.ndarray, integrated_times: np.ndarray | int
    ) -> None:
        n = len(prefixes)
        times = np.broadcast_to(np.asarray(integrated_times, dtype=np.int64), (n,))
        if n <= 256:
            # Small batches (the HTTP path): a VALUES list beats registering an Arrow table.
            rows = ",".join(
                f"({int(p)},{start + i},{int(t)})"
                for i, (p, t) in enumerate(zip(prefixes.tolist(), times.tolist(), strict=True))
            )
            with self._lock:
                try:
                    self._con.execute(f"INSERT INTO entries VALUES {rows}")
                except duckdb.Error as exc:
                    raise StoreError(f"index insert failed: {exc}") from exc
            return
        table = pa.table(
            {
                "prefix": prefixes,
                "idx": np.arange(start, start + n, dtype=np.int64),
                "integrated_time": np.ascontiguousarray(times),
            }
        )
        with self._lock:
            try:
                self._con.register("_new_entries", table)
                self._con.execute("INSERT INTO entries SELECT * FROM _new_entries")
            except duckdb.Error as exc:
                raise StoreError(f"index insert failed: {exc}") from exc
            finally:
                self._con.unregister("_new_entries")

    def candidates(self, leaf_hashes: np.ndarray, below: int) -> dict[int, list[int]]:
        """Map each stored prefix among ``leaf_hashes`` to the indices (< ``below``) having it."""
        prefixes = hash_prefixes(leaf_hashes)
        if len(prefixes) == 0:
            return {}
        with self._lock:
            prefixes = prefixes[self._maybe_present(prefixes)]
        if len(prefixes) == 0:
            return {}
        # Literal IN lists let DuckDB prune with its min/max statistics; the
        # values are ints we produced, so building the SQL is safe.
        sql = (
            "SELECT prefix, idx FROM entries WHERE idx < ? AND prefix IN ("
            + ",".join(str(int(p)) for p in set(prefixes.tolist()))
            + ")"
        )
        with self._lock:
            rows = self._con.execute(sql, [below]).fetchall()
        out: dict[int, list[int]] = {}
        for prefix, idx in rows:
            out.setdefault(int(prefix), []).append(int(idx))
        return out

    def integrated_times(self, indices: list[int]) -> dict[int, int]:
        """Integration times (Unix seconds) of ``indices``."""
        if not indices:
            return {}
        sql = (
            "SELECT idx, integrated_time FROM entries WHERE idx IN ("
            + ",".join(str(int(i)) for i in indices)
            + ")"
        )
        with self._lock:
            return {int(i): int(t) for i, t in self._con.execute(sql).fetchall()}

    def integrated_times_between(self, start: int, end: int) -> np.ndarray:
        """Integration times of indices ``start .. end`` as int64 (0 where no row is stored).

        One range scan: DuckDB prunes row groups by the ``idx`` min/max, so a
        bundle's worth costs what a single row does (about a millisecond).
        """
        out = np.zeros(max(0, end - start), dtype=np.int64)
        if end <= start:
            return out
        with self._lock:
            cols = self._con.execute(
                "SELECT idx, integrated_time FROM entries WHERE idx >= ? AND idx < ?",
                [start, end],
            ).fetchnumpy()
        idx = np.asarray(cols["idx"], dtype=np.int64)
        out[idx - start] = np.asarray(cols["integrated_time"], dtype=np.int64)
        return out

    def truncate(self, size: int) -> int:
        """Drop rows at or past ``size`` (recovery after a crash); returns how many."""
        with self._lock:
            n = self._con.execute("SELECT count(*) FROM entries WHERE idx >= ?", [size]).fetchall()[
                0
            ]
            self._con.execute("DELETE FROM entries WHERE idx >= ?", [size])
            if n and n[0]:
                self._rebuild_filter()
        return int(n[0]) if n else 0

    def count(self) -> int:
        """How many rows the index holds."""
        with self._lock:
            row = self._con.execute("SELECT count(*) FROM entries").fetchall()[0]
        return int(row[0]) if row else 0
