"""Detection off the event loop: one worker thread screens concurrent requests together."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from guard_server import metrics
from guard_server.guard import count

if TYPE_CHECKING:
    from guard_server.guard import Verdict

# Requests that arrive while a batch is being screened wait for the next one; a batch this
# large already costs one encoder call of ~32 short texts.
MAX_BATCH = 32


class ScreenBatcher:
    """`await screen(texts)` from any task; the worker drains the queue and screens every
    waiting conversation with one `screen_many` call of the guard (one encoder pass for all):
    a `Guard` in this process, or the server's `DetectionProcess`.

    Registration training (`Guard.sync`) also runs there, never on the event loop. A
    detection error fails the requests of its batch (fail closed), not the worker.
    """

    def __init__(self, guard: Any, max_batch: int = MAX_BATCH):
        self.guard = guard
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="guard-screen", daemon=True)
        self._worker.start()

    async def screen(self, texts: list[str]) -> Verdict:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((texts, loop, future, time.perf_counter()))
        return await future

    def _run(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            start = time.perf_counter()
            try:
                results, error = self.guard.screen_many([job[0] for job in jobs]), None
            except Exception as exc:  # fail the batch's requests, keep serving
                results, error = [None] * len(jobs), exc
            done = time.perf_counter()
            metrics.SCREEN_BATCH_SIZE.observe(len(jobs))
            metrics.SCREEN_BATCH_SECONDS.observe(done - start)
            for (_, loop, future, queued), verdict in zip(jobs, results, strict=True):
                if verdict is not None:
                    count(verdict)
                # Screening time: queued behind other batches, then detected (the event loop
                # picking the verdict up is the server's own latency, measured end to end).
                metrics.DETECTION_SECONDS.observe(done - queued)
                loop.call_soon_threadsafe(_settle, future, verdict, error)


def _settle(future: asyncio.Future, verdict: Verdict | None, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(verdict)
