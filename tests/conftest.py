"""Shared fixtures: the default model, free loopback ports."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir() -> str:
    from guard_server.models import convert_default_model

    return str(convert_default_model())


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on loopback for the whole session."""
    from bench.pgserver import postgres_server

    with postgres_server() as url:
        yield url
