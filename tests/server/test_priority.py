"""On a CPU host, a request's screening is not queued behind the engine's generation."""

from __future__ import annotations

import os

import psutil
import pytest

from guard_server.detection import is_detection_process
from guard_server.priority import default_engine_nice


def _nice(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


def test_engine_threads_run_below_the_server_that_screens(server):
    nice = default_engine_nice()
    if nice == 0:
        pytest.skip("the engine keeps its priority where it runs on a GPU")
    api = psutil.Process(server.proc.pid)
    children = api.children(recursive=True)
    detection = [p for p in children if is_detection_process(p)]
    engine = [p for p in children if p not in detection]
    assert engine, "the engine runs in child processes"
    assert len(detection) == 1, "screening runs in one process of its own"
    started_at = _nice(0)  # the server inherits the test's own priority
    for process in (api, *detection):  # the event loop and screening keep it
        assert {_nice(t.id) for t in process.threads()} == {started_at}, process.cmdline()
    for process in engine:
        for thread in process.threads():
            assert _nice(thread.id) >= max(nice, started_at), process.name()
