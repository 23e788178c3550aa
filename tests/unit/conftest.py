"""Unit-tier fixtures."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Torch on one thread for the block. On a small shared machine, OpenMP threads
    spin-waiting for a busy core make these small kernels 10-20x slower; one thread is as
    fast here and immune to that, and float sums then do not depend on the host's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    with single_thread():
        yield
