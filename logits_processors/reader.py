"""Read-only access to compiled forget targets for the engine worker.

The worker needs one query, "the compiled blob of target X at version V", and must not import
the server package to run it: this layer owns that read, the server's store writes the rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from logits_processors.location import is_postgres, sqlite_path


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only SQLite connection; the URI form escapes '#', '%' and '?' in the path."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30)


GENERATION_SQL = "SELECT value FROM meta WHERE key='generation'"
WATCH_SQL = "SELECT target_id, policy, phrases FROM watch"


@dataclass(frozen=True)
class WatchedTarget:
    """What the answer watch needs of an active target: its names and its policy."""

    target_id: str
    policy: str
    phrases: tuple[str, ...]


class CompiledReader(ABC):
    """Reads compiled targets by exact (id, version), and the answer watch's names; never
    writes."""

    @abstractmethod
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]: ...

    def get_compiled(self, target_id: str, version: int) -> bytes | None:
        sql = "SELECT blob FROM compiled WHERE target_id=? AND version=?"
        records = self._query(sql, (target_id, version))
        return bytes(records[0][0]) if records else None

    def generation(self) -> int:
        """Grows with every write to the registry."""
        return int(self._query(GENERATION_SQL)[0][0])

    def watched(self) -> list[WatchedTarget]:
        """Every active target's names, for the answer watch."""
        return [
            WatchedTarget(target_id, policy, tuple(json.loads(phrases)))
            for target_id, policy, phrases in self._query(WATCH_SQL)
        ]


class SQLiteReader(CompiledReader):
    """One read-only connection per thread on the registry's SQLite file (WAL readers never
    block the server's writer)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_readonly(self.path)
        return conn.execute(sql, params).fetchall()


class PostgresReader(CompiledReader):
    """One autocommit connection per thread on the shared PostgreSQL registry."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = psycopg.connect(self.url, autocommit=True)
        return conn.execute(sql.replace("?", "%s"), params).fetchall()


def open_reader(location: str) -> CompiledReader:
    if is_postgres(location):
        return PostgresReader(location)
    return SQLiteReader(sqlite_path(location))
