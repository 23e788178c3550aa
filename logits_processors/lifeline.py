"""Nothing outlives the server: the engine's processes end soon after the server that owns them.

vLLM's engine core and its workers are children and grandchildren of the API server. A server
ended by `kill -9` cannot stop them, and they would hold their memory (on a GPU, the card's)
for good. The forget processor is built in the worker, so the worker watches the server's
process (named by `SERVER_PID_ENV`, set by `guard-server serve`) and, once it is gone, ends the
engine core that spawned it and then itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

SERVER_PID_ENV = "GUARD_SERVER_PID"
POLL_S = 0.5

logger = logging.getLogger(__name__)
_started = False


def server_pid_value() -> str:
    """What `guard-server serve` puts in the environment: its pid and start time, so that a
    pid reused by another process after the server died is not mistaken for the server."""
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time()}"


def watch_server() -> None:
    """Start the watchdog thread once per process, if a server named itself."""
    global _started
    value = os.environ.get(SERVER_PID_ENV)
    if _started or not value:
        return
    pid_text, _, created = value.partition(":")
    pid = int(pid_text)
    if pid == os.getpid():  # the engine runs inside the server process: it ends with it
        return
    _started = True
    parent = os.getppid()
    thread = threading.Thread(
        target=_watch, args=(pid, float(created or 0), parent), name="guard-lifeline", daemon=True
    )
    thread.start()


def _alive(pid: int, created: float) -> bool:
    import psutil

    try:
        return not created or abs(psutil.Process(pid).create_time() - created) < 1e-3
    except psutil.NoSuchProcess:
        return False


def _watch(pid: int, created: float, parent: int) -> None:
    while _alive(pid, created):
        time.sleep(POLL_S)
    logger.error("the server (pid %d) is gone: ending the engine", pid)
    if parent not in (pid, 1):
        with contextlib.suppress(ProcessLookupError):
            os.kill(parent, signal.SIGKILL)  # the engine core that spawned this worker
    os.kill(os.getpid(), signal.SIGKILL)
