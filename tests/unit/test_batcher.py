"""Detection off the event loop: concurrent requests screened together, failures fail closed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from guard_server.batcher import ScreenBatcher
from guard_server.guard import Flag, Verdict


class SlowGuard:
    """Stands in for the real guard: records each batch; the first one waits for a signal."""

    def __init__(self):
        self.batches: list[list[list[str]]] = []
        self.release = threading.Event()
        self.threads: set[str] = set()

    def screen_many(self, conversations):
        self.threads.add(threading.current_thread().name)
        self.batches.append(conversations)
        if len(self.batches) == 1:
            assert self.release.wait(10)
        if ["boom"] in conversations:
            raise RuntimeError("encoder failed")
        return [Verdict((Flag(c[0], 1, 1.0),), "refuse") for c in conversations]


def test_requests_waiting_together_are_screened_in_one_batch_off_the_loop():
    guard = SlowGuard()
    batcher = ScreenBatcher(guard)

    async def main():
        first = asyncio.create_task(batcher.screen(["a"]))
        while not guard.batches:  # until the worker is busy with "a"
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.screen([t])) for t in "bcd"]
        while batcher.pending() < 3:
            await asyncio.sleep(0.01)
        guard.release.set()
        return await asyncio.gather(first, *rest)

    verdicts = asyncio.run(main())
    assert [v.flags[0].target_id for v in verdicts] == list("abcd")
    assert guard.batches == [[["a"]], [["b"], ["c"], ["d"]]]
    assert guard.threads == {"guard-screen"}


def test_a_failed_batch_fails_its_requests_and_the_worker_keeps_serving():
    guard = SlowGuard()
    guard.release.set()
    batcher = ScreenBatcher(guard)

    async def main():
        with pytest.raises(RuntimeError, match="encoder failed"):
            await batcher.screen(["boom"])
        return await batcher.screen(["ok"])

    assert asyncio.run(main()).flags[0].target_id == "ok"


def test_short_requests_are_screened_before_a_long_one_that_arrived_first():
    guard = SlowGuard()
    batcher = ScreenBatcher(guard)
    long_text = "word " * 1000

    async def main():
        first = asyncio.create_task(batcher.screen(["a"]))
        while not guard.batches:
            await asyncio.sleep(0.01)
        long = asyncio.create_task(batcher.screen([long_text]))
        while batcher.pending() < 1:
            await asyncio.sleep(0.01)
        short = [asyncio.create_task(batcher.screen([t])) for t in "bc"]
        while batcher.pending() < 3:
            await asyncio.sleep(0.01)
        guard.release.set()
        return await asyncio.gather(first, long, *short)

    asyncio.run(main())
    assert guard.batches[1:] == [[["b"], ["c"]], [[long_text]]]


def test_a_verdict_that_misses_its_deadline_fails_closed_with_a_503():
    from guard_server.detection import DetectionError

    guard = SlowGuard()  # never released: detection hangs
    batcher = ScreenBatcher(guard, deadline_s=0.2)

    async def main():
        with pytest.raises(DetectionError, match="retry") as info:
            await batcher.screen(["a"])
        return info.value

    error = asyncio.run(main())
    assert error.status_code == 503
    guard.release.set()
