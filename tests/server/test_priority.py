"""On a CPU host, a request's screening is not queued behind the engine's generation."""

from __future__ import annotations

import os

import psutil

from guard_server.priority import default_engine_nice


def test_engine_threads_run_below_the_server_that_screens(server):
    nice = default_engine_nice()
    api = psutil.Process(server.proc.pid)
    engine = api.children(recursive=True)
    assert engine, "the engine runs in child processes"
    assert os.getpriority(os.PRIO_PROCESS, api.pid) == 0  # screening keeps its priority
    for process in engine:
        for thread in process.threads():
            assert os.getpriority(os.PRIO_PROCESS, thread.id) >= nice, process.name()
