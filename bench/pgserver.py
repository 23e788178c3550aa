"""A real PostgreSQL server for tests and benchmarks: a throwaway cluster on a loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ERR_NO_SERVER = (
    "PostgreSQL server binaries not found (initdb, pg_ctl): install Debian's `postgresql` "
    "package (`.ci/run` does)"
)


def _bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError(ERR_NO_SERVER)
    return Path(candidates[-1]).parent


def _as_owner(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run its programs as the `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """Start a cluster (trust auth, loopback only); yield its URL; stop and remove it."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="guard-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "guard"]
        subprocess.run(_as_owner([*initdb, "--no-sync"]), check=True, capture_output=True)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w"]
        subprocess.run(
            _as_owner([*start, "-l", str(root / "log"), "start"]), check=True, capture_output=True
        )
        try:
            yield f"postgresql://guard@127.0.0.1:{port}/postgres"
        finally:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(_as_owner(stop), check=False, capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reset(url: str) -> None:
    """An empty registry: drop the guard's tables."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS targets, compiled, adapters, meta")
