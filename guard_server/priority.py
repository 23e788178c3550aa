"""Screening before generation on a shared CPU: the engine's processes yield to the guard.

On a CPU host the engine's workers keep every core busy, and each request's detection (the
encoder, the classifiers) waits for a time slice behind them. Measured with 50 targets on a
2-core x86 VM, two busy processes beside it took detection from p50 6.9 / p99 10.1 ms to
17.3 / 25.1 ms; with those processes at nice 10, 5.8 / 14.4 ms. The engine loses nothing it
would not lose anyway: the guard's work is on every request's path before the engine's.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("guard_server")

CPU_ENGINE_NICE = 10


def default_engine_nice() -> int:
    """CPU_ENGINE_NICE on a CPU host; 0 (unchanged) where the engine runs on a GPU."""
    import torch

    return 0 if torch.cuda.is_available() else CPU_ENGINE_NICE


def lower_engine_priority(nice: int) -> int:
    """Set every thread of this process's descendants (the engine core and its workers) to
    `nice`, never raising a priority; threads they start later inherit it. Returns how many
    threads changed."""
    import psutil

    from guard_server.detection import is_detection_process

    changed = 0
    for child in psutil.Process().children(recursive=True):
        if is_detection_process(child):  # screens requests: keeps the server's priority
            continue
        try:
            threads = child.threads()
        except psutil.Error:
            continue
        for thread in threads:
            try:
                if os.getpriority(os.PRIO_PROCESS, thread.id) < nice:
                    os.setpriority(os.PRIO_PROCESS, thread.id, nice)
                    changed += 1
            except OSError:  # exited meanwhile
                continue
    logger.info("engine threads at nice %d: %d changed", nice, changed)
    return changed
