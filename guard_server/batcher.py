"""Detection off the event loop: one worker thread screens concurrent requests together."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from guard_server import metrics
from guard_server.limits import check_screenable

if TYPE_CHECKING:
    from guard_server.guard import Verdict

# Requests that arrive while a batch is being screened wait for the next one; a batch this
# large already costs one encoder call of ~32 short texts.
MAX_BATCH = 32
# A conversation longer than this (in characters) is screened in a batch of its own, after
# the short ones waiting: a long request cannot hold the short ones behind it.
LONG_CHARS = 2_000
# How long a request waits for its verdict before it fails closed (503, retry).
DEADLINE_S = 10.0
ERR_DEADLINE = "screening took longer than {s:.0f} s; retry"


class ScreenBatcher:
    """`await screen(texts)` from any task; the worker drains the queue and screens every
    waiting conversation with one `screen_many` call of the guard (one encoder pass for all):
    a `Guard` in this process, or the server's `DetectionProcess`. Short conversations go
    first and together; a long one is screened alone. A request whose verdict is not back
    within `deadline_s` fails closed with a 503.

    Registration training (`Guard.sync`) also runs there, never on the event loop. A
    detection error fails the requests of its batch (fail closed), not the worker.
    """

    def __init__(self, guard: Any, max_batch: int = MAX_BATCH, deadline_s: float = DEADLINE_S):
        self.guard = guard
        self.max_batch = max_batch
        self.deadline_s = deadline_s
        self._ready = threading.Condition()
        self._short: collections.deque = collections.deque()
        self._long: collections.deque = collections.deque()
        self._worker = threading.Thread(target=self._run, name="guard-screen", daemon=True)
        self._worker.start()

    async def screen(self, texts: list[str]) -> Verdict:
        """The verdict for one conversation; a DetectionError (503) past the deadline."""
        from guard_server.detection import DetectionError

        check_screenable(texts)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = (texts, loop, future, time.perf_counter())
        with self._ready:
            long = sum(map(len, texts)) > LONG_CHARS
            (self._long if long else self._short).append(job)
            self._ready.notify()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.deadline_s)
        except TimeoutError:
            future.cancel()
            raise DetectionError(ERR_DEADLINE.format(s=self.deadline_s)) from None

    def pending(self) -> int:
        with self._ready:
            return len(self._short) + len(self._long)

    def _next_batch(self) -> list[tuple]:
        """Every short conversation waiting (up to `max_batch`), or else one long one."""
        with self._ready:
            while not self._short and not self._long:
                self._ready.wait()
            if not self._short:
                return [self._long.popleft()]
            count = min(len(self._short), self.max_batch)
            return [self._short.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            jobs = [job for job in self._next_batch() if not job[2].cancelled()]
            if not jobs:
                continue
            start = time.perf_counter()
            try:
                results, error = self.guard.screen_many([job[0] for job in jobs]), None
            except Exception as exc:  # fail the batch's requests, keep serving
                results, error = [None] * len(jobs), exc
            done = time.perf_counter()
            metrics.SCREEN_BATCH_SIZE.observe(len(jobs))
            metrics.SCREEN_BATCH_SECONDS.observe(done - start)
            for (_, loop, future, queued), verdict in zip(jobs, results, strict=True):
                # Screening time: queued behind other batches, then detected (the event loop
                # picking the verdict up is the server's own latency, measured end to end).
                metrics.DETECTION_SECONDS.observe(done - queued)
                # A caller may have given up (deadline) and its loop closed since.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, verdict, error)


def _settle(future: asyncio.Future, verdict: Verdict | None, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(verdict)
