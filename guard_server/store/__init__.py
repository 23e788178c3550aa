"""Durable storage of forget targets: one interface (`base`), SQLite by default (`sqlite`),
PostgreSQL for several replicas (`postgres`), chosen by the registry's location."""

from __future__ import annotations

from guard_server.store.base import (
    SCHEMA,
    AuditEntry,
    DuplicateKey,
    Learned,
    SQLStore,
    TargetRow,
    TargetStore,
    name_key,
)
from guard_server.store.sqlite import SQLiteStore
from logits_processors.location import is_postgres, sqlite_path

__all__ = [
    "SCHEMA",
    "AuditEntry",
    "DuplicateKey",
    "Learned",
    "SQLStore",
    "SQLiteStore",
    "TargetRow",
    "TargetStore",
    "name_key",
    "open_store",
]


def open_store(location: str) -> TargetStore:
    """The registry at `location`: a PostgreSQL URL, else a SQLite file path."""
    if is_postgres(location):
        from guard_server.store.postgres import PostgresStore  # psycopg only when used

        return PostgresStore(location)
    return SQLiteStore(sqlite_path(location))
