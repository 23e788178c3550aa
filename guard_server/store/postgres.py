"""The registry on PostgreSQL (psycopg 3 and its pool), for several replicas sharing one.

The SQL is `SQLStore`'s; this backend adds a connection pool, transactions and its schema.
A commit returns once PostgreSQL has made it durable, so an acknowledged registration
survives a crash of any replica; every replica sees it through the generation counter, which
each screening reads (one indexed row, well under a millisecond on loopback).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from guard_server.store.base import SCHEMA, DuplicateKey, SQLStore

_SCHEMA = SCHEMA.format(
    real="DOUBLE PRECISION", blob="BYTEA", counter="BIGINT", serial="BIGSERIAL PRIMARY KEY"
)
# Replicas starting together would race to create the tables: one at a time.
_SCHEMA_LOCK = 0x6775617264
# The server's threads that touch the registry at once: the event loop, the screening
# worker, registrations compiling in the background, the admin API's thread pool.
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 30.0


class _Placeholders:
    """A pooled connection that takes the `?` placeholders `SQLStore` writes (SQLite's
    paramstyle; psycopg's is `%s`, and the two share none)."""

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor:
        return self.raw.execute(sql.replace("?", "%s"), params)


class PostgresStore(SQLStore):
    def __init__(self, url: str):
        self.url = url
        # Connections are checked as they are handed out: one that PostgreSQL closed while
        # idle (a restart, a failover) is replaced rather than failing a request.
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT_S,
            name="guard-registry",
            open=False,
        )
        self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)  # unreachable: fail here, clearly
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _read(self) -> Iterator[_Placeholders]:
        with self._pool.connection() as conn:
            yield _Placeholders(conn)

    @contextmanager
    def _tx(self) -> Iterator[_Placeholders]:
        with self._pool.connection() as conn:
            try:
                with conn.transaction():
                    yield _Placeholders(conn)
            except psycopg.errors.UniqueViolation as exc:
                raise DuplicateKey(str(exc)) from exc
