"""One store URL wherever a store is chosen: a DuckDB path or a ``postgresql://`` URL."""

from __future__ import annotations

from pathlib import Path

from rekorkit.store import EntryStore

__all__ = ["is_postgres_url", "open_store"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a DuckDB file."""
    return isinstance(location, str) and location.lower().startswith(_POSTGRES_SCHEMES)


def open_store(location: str | Path, *, read_only: bool = False) -> EntryStore:
    """Open the store at ``location``: PostgreSQL for a ``postgresql://`` URL, else DuckDB.

    Either backend satisfies :class:`~rekorkit.store.EntryStore`; the
    PostgreSQL-only methods (staging for distributed audits, compare-and-swap
    with an explicit ``expected_size``) are reached after an ``isinstance`` check.

    Raises:
        StoreError: the store cannot be opened or its schema is unsupported.
    """
    if is_postgres_url(location):
        from rekorkit.store.postgres import PostgresStore

        return PostgresStore(str(location), read_only=read_only)
    from rekorkit.store.duckdb import DuckDBStore

    return DuckDBStore(location, read_only=read_only)
