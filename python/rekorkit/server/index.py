"""DuckDB index from leaf hash to log index, for lookups and de-duplication.

Only the first 8 bytes of each leaf hash are stored (as a BIGINT) beside the
index and the integration time: that keeps bulk inserts cheap (one Arrow
append per batch) and the table small. A prefix match is a candidate only;
callers confirm it against the leaf hash in the level-0 tile, so a 64-bit
prefix collision can never return the wrong entry.
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

    def truncate(self, size: int) -> int:
        """Drop rows at or past ``size`` (recovery after a crash); returns how many."""
        with self._lock:
            n = self._con.execute("SELECT count(*) FROM entries WHERE idx >= ?", [size]).fetchone()
            self._con.execute("DELETE FROM entries WHERE idx >= ?", [size])
        return int(n[0]) if n else 0

    def count(self) -> int:
        """How many rows the index holds."""
        with self._lock:
            row = self._con.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0
