"""Unit-tier fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    # On a small shared machine, OpenMP threads spin-waiting for a busy core make these
    # small kernels 10-20x slower; one thread is as fast here and immune to that.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
