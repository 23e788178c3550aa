"""The registry on PostgreSQL (psycopg 3), for several replicas sharing one registry.

The SQL is `SQLStore`'s; this backend adds connections, transactions and its schema. A
commit returns once PostgreSQL has made it durable, so an acknowledged registration survives
a crash of any replica; every replica sees it through the generation counter, which each
screening reads (one indexed row, well under a millisecond on loopback).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from guard_server.store import SCHEMA, DuplicateKey, SQLStore

_SCHEMA = SCHEMA.format(
    real="DOUBLE PRECISION", blob="BYTEA", counter="BIGINT", serial="BIGSERIAL PRIMARY KEY"
)
# Replicas starting together would race to create the tables: one at a time.
_SCHEMA_LOCK = 0x6775617264


class _Placeholders:
    """A psycopg connection that takes the `?` placeholders `SQLStore` writes."""

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor:
        return self.raw.execute(sql.replace("?", "%s"), params)


class PostgresStore(SQLStore):
    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    def _conn(self) -> _Placeholders:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.raw.closed or conn.raw.broken:
            conn = self._local.conn = _Placeholders(psycopg.connect(self.url, autocommit=True))
        return conn

    @contextmanager
    def _tx(self) -> Iterator[_Placeholders]:
        db = self._conn()
        try:
            with db.raw.transaction():
                yield db
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateKey(str(exc)) from exc
