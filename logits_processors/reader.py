"""Read-only access to compiled forget targets for the engine worker.

The worker needs one query, "the compiled blob of target X at version V", and must not import
the server package to run it: this layer owns that read, the server's store writes the rows.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path

ERR_SCHEME = (
    "unsupported registry location {location!r}: expected a SQLite file path or a postgresql:// URL"
)


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only SQLite connection; the URI form escapes '#', '%' and '?' in the path."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30)


class CompiledReader(ABC):
    """Reads compiled targets by exact (id, version); never writes."""

    @abstractmethod
    def get_compiled(self, target_id: str, version: int) -> bytes | None: ...


class SQLiteReader(CompiledReader):
    """One read-only connection per thread on the registry's SQLite file (WAL readers never
    block the server's writer)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def get_compiled(self, target_id: str, version: int) -> bytes | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_readonly(self.path)
        sql = "SELECT blob FROM compiled WHERE target_id=? AND version=?"
        record = conn.execute(sql, (target_id, version)).fetchone()
        return bytes(record[0]) if record else None


class PostgresReader(CompiledReader):
    """One autocommit connection per thread on the shared PostgreSQL registry."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def get_compiled(self, target_id: str, version: int) -> bytes | None:
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = psycopg.connect(self.url, autocommit=True)
        sql = "SELECT blob FROM compiled WHERE target_id=%s AND version=%s"
        record = conn.execute(sql, (target_id, version)).fetchone()
        return bytes(record[0]) if record else None


def open_reader(location: str) -> CompiledReader:
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresReader(location)
    if "://" in location and not location.startswith("file:"):
        raise ValueError(ERR_SCHEME.format(location=location))
    return SQLiteReader(location.removeprefix("file:"))
