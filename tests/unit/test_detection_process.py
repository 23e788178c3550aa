"""Detection in its own process: verdicts come back whole, failures fail closed, a dead child
is replaced, and the child never outlives the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from guard_server.detection import DetectionError, DetectionProcess, is_detection_process
from guard_server.guard import Flag, Verdict


class EchoGuard:
    """Stands in for the guard built in the child: flags a conversation that says "forget",
    fails on "boom", exits the child on "die"."""

    def __init__(self, tag: str):
        self.tag = tag
        self.synced = 0

    def sync(self) -> None:
        self.synced += 1

    def has_targets(self) -> bool:
        return self.synced > 0

    def screen_many(self, conversations):
        if ["die"] in conversations:
            os._exit(3)
        if ["hang"] in conversations:
            import time

            time.sleep(3600)
        if ["boom"] in conversations:
            raise RuntimeError("encoder failed")
        return [
            Verdict((Flag(self.tag, 2, 0.9, os.getpid()),), "refuse")
            if "forget" in c
            else Verdict()
            for c in conversations
        ]


def echo_guard(tag: str) -> EchoGuard:
    return EchoGuard(tag)


def test_a_hung_child_fails_the_call_closed_and_is_replaced():
    detection = DetectionProcess(echo_guard, "t1", call_timeout_s=1.0)
    try:
        hung = detection.pid
        with pytest.raises(DetectionError, match="did not answer") as info:
            detection.screen_many([["hang"]])
        assert info.value.status_code == 503
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == "zombie"
        assert detection.screen_many([["forget"]])[0].flagged  # a new child answers
        assert detection.pid != hung
    finally:
        detection.close()


def broken_guard() -> EchoGuard:
    raise FileNotFoundError("no encoder at /nowhere")


@pytest.fixture
def detection():
    process = DetectionProcess(echo_guard, "t1")
    yield process
    process.close()


def test_verdicts_are_computed_in_another_process_and_come_back_whole(detection):
    verdicts = detection.screen_many([["hello"], ["forget"]])
    assert verdicts[0] == Verdict()
    (flag,) = verdicts[1].flags
    assert (flag.target_id, flag.version, verdicts[1].action) == ("t1", 2, "refuse")
    assert flag.evidence == detection.pid != os.getpid()
    assert detection.has_targets()  # the child synced before its first answer
    assert is_detection_process(psutil.Process(detection.pid))  # named in ps beside the engine
    assert not is_detection_process(psutil.Process())


def test_a_failed_screen_fails_its_call_and_the_child_keeps_serving(detection):
    pid = detection.pid
    with pytest.raises(DetectionError, match="encoder failed"):
        detection.screen_many([["boom"]])
    assert detection.screen_many([["forget"]])[0].flagged
    assert detection.pid == pid


def test_a_child_that_died_fails_the_call_in_flight_and_is_replaced(detection):
    first = detection.pid
    with pytest.raises(DetectionError, match="ended"):
        detection.screen_many([["die"]])
    assert detection.screen_many([["forget"]])[0].flagged
    assert detection.pid not in (None, first)
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"


def test_a_guard_that_cannot_be_built_stops_the_server_start_with_its_reason():
    with pytest.raises(DetectionError, match="no encoder at /nowhere"):
        DetectionProcess(broken_guard)


def test_the_child_exits_when_the_server_is_killed(tmp_path):
    """SIGKILL leaves no atexit handler to run: the child sees its pipe close and exits."""
    script = textwrap.dedent(
        """
        import sys, time
        from guard_server.detection import DetectionProcess
        from tests.unit.test_detection_process import echo_guard
        process = DetectionProcess(echo_guard, "t1")
        print(process.pid, flush=True)
        time.sleep(600)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    server = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        child = psutil.Process(int(server.stdout.readline()))
        assert child.is_running()
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        gone, alive = psutil.wait_procs([child], timeout=30)
        assert alive == [], "the detection process outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
