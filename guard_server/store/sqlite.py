"""The registry in one SQLite file (WAL, `synchronous=FULL`): the default."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from guard_server.store.base import SCHEMA, DuplicateKey, SQLStore
from logits_processors.reader import connect_readonly

SQLITE_SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"


class SQLiteStore(SQLStore):
    """SQLite in WAL mode with `synchronous=FULL`: a returned write survives a crash."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            schema = SCHEMA.format(
                real="REAL", blob="BLOB", counter="INTEGER", serial=SQLITE_SERIAL
            )
            self._conn().executescript(schema)  # idempotent; executescript commits itself

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = connect_readonly(self.path)
            else:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._conn()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            raise DuplicateKey(str(exc)) from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
