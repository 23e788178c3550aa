"""One real server for this tier, driven by the official `openai` client."""

from __future__ import annotations

import pytest
from openai import OpenAI

from bench.serverproc import ADMIN_KEY, start_server
from tests.conftest import free_port

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="package")
def server(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("server")
    # No prefix caching: a cache hit computes only the suffix, in another shape, and bf16
    # greedy output then depends on which requests came before (vLLM's, guard or not). No
    # background learning either: its requests would join the batches tests compare
    # (tests/learning has a server that learns).
    proc = start_server(
        free_port(),
        root / "guard.db",
        root / "server.log",
        "--no-enable-prefix-caching",
        "--no-learn-associations",
    )
    yield proc
    proc.stop()


class Baselines(dict):
    """Unguarded answers, computed once for the package with no target registered: a module
    that a shuffled order leaves and re-enters finds them here instead of asking again."""

    def of(self, key: str, make):
        if key not in self:
            self[key] = make()
        return self[key]


@pytest.fixture(scope="package")
def baselines() -> Baselines:
    return Baselines()


@pytest.fixture(scope="package")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="package")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
