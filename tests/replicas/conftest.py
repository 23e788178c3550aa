"""Two replica servers for this package (defined here, so they stop when the package ends)."""

from __future__ import annotations

import pytest

from bench.pgserver import database
from bench.serverproc import start_server
from tests.conftest import free_port


def start(port: int, url: str, log):
    return start_server(port, url, log, "--no-enable-prefix-caching")


@pytest.fixture(scope="package")
def servers(postgres_url, model_dir, tmp_path_factory):
    """Two replicas, on a database of their own (the store contract's tests
    reset the default one between these tests when the order is shuffled)."""
    url = database(postgres_url, "replicas")
    root = tmp_path_factory.mktemp("replicas")
    a = start(free_port(), url, root / "a.log")
    b = start(free_port(), url, root / "b.log")
    servers = {"a": a, "b": b, "url": url, "root": root}
    yield servers
    servers["a"].stop()
    servers["b"].stop()
