"""In the background, the guard learns what the served model associates with each target.

A target is enforced at once on what the operator gave (its names, aliases and documents).
Then this server asks the served model a few questions about the name (`QUESTIONS`, greedy,
a bounded number of tokens each) and keeps the distinctive phrases of its answers: the works,
roles, places and other names a question can point at the target through. What is learned is
stored beside the target's version in the registry, so every replica screens with it and one
replica learns each version once; a replica that dies while learning is replaced after
`STALE_AFTER` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from classifiers.associations import MAX_PER_TARGET, QUESTIONS, extract
from guard_server import metrics
from guard_server.store import Learned
from logits_processors.params import UNWATCHED_KEY

if TYPE_CHECKING:
    from guard_server.store import TargetRow, TargetStore

logger = logging.getLogger(__name__)

MAX_TOKENS = 64  # per question: a bound on what one target costs the engine
STALE_AFTER = 120.0
POLL_SECONDS = 1.0
TARGETS_AT_ONCE = 8


def learning_status(row: TargetRow, learned: Learned | None) -> dict[str, Any]:
    """A target's learning as the admin API shows it."""
    if row.status != "active":
        return {"status": "waiting"}
    if learned is None or learned.version != row.version:
        return {"status": "pending"}
    return {"status": learned.status, "associations": learned.phrases, **learned.detail}


class Learner:
    """Learns every active target's associations, a few targets at a time."""

    def __init__(self, store: TargetStore, engine: Any, tokenizer: Any):
        self.store = store
        self.engine = engine  # vLLM's own engine client: these questions are not screened
        self.tokenizer = tokenizer
        self._seen = -1
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="guard-learner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.learn_pending()
            except Exception:  # the registry or the engine failed: try again later
                logger.exception("learning associations failed; retrying")
            await asyncio.sleep(POLL_SECONDS)

    async def learn_pending(self) -> int:
        """Learn every active target whose version nobody has learned; how many were."""
        generation = await asyncio.to_thread(self.store.generation)
        if generation == self._seen:
            return 0
        rows, learned = await asyncio.to_thread(self._listing)
        todo = [r for r in rows if _unlearned(r, learned.get(r.id))]
        mine = {r.id for r in todo}
        elsewhere = any(
            learned[r.id].status == "learning" for r in rows if r.id in learned and r.id not in mine
        )
        taken = 0
        # Claimed a few at a time, just before they are learned: a claim older than
        # STALE_AFTER is a replica that died, never one that is still working through a list.
        for start in range(0, len(todo), TARGETS_AT_ONCE):
            batch = [
                row
                for row in todo[start : start + TARGETS_AT_ONCE]
                if await asyncio.to_thread(
                    self.store.claim_learning, row.id, row.version, STALE_AFTER
                )
            ]
            await asyncio.gather(*(self.learn(row) for row in batch))
            taken += len(batch)
        if taken == len(todo) and not elsewhere:  # else another replica is at it: look again
            self._seen = generation
        return taken

    def _listing(self) -> tuple[list[TargetRow], dict[str, Learned]]:
        return [r for r in self.store.every() if r.status == "active"], self.store.learned()

    async def learn(self, row: TargetRow) -> Learned:
        """Ask the questions about one claimed target version and record the answer."""
        started = time.perf_counter()
        name = row.spec["name"]
        names = [name, *row.spec.get("aliases", [])]
        try:
            answers = await asyncio.gather(*(self._ask(q.format(name=name)) for q in QUESTIONS))
            phrases = [p for text, _ in answers for p in extract(text, names)]
            detail = {
                "questions": len(QUESTIONS),
                "tokens": sum(n for _, n in answers),
                "seconds": round(time.perf_counter() - started, 3),
            }
            learned = Learned(
                row.id, row.version, "done", list(dict.fromkeys(phrases))[:MAX_PER_TARGET], detail
            )
        except Exception as exc:
            if getattr(self.engine, "errored", False):
                # The engine stopped (a shutdown) or died: the target is not at fault. Its
                # claim goes stale and the next server to run learns it.
                raise
            logger.exception("learning %s@%d failed", row.id, row.version)
            learned = Learned(row.id, row.version, "failed", [], {"error": type(exc).__name__})
        await asyncio.to_thread(self.store.put_learned, learned)
        metrics.TARGETS_LEARNED.labels(learned.status).inc()
        metrics.LEARNING_SECONDS.observe(time.perf_counter() - started)
        return learned

    async def _ask(self, question: str) -> tuple[str, int]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=0.0, max_tokens=MAX_TOKENS, extra_args={UNWATCHED_KEY: True}
        )
        prompt = {"prompt_token_ids": self._prompt_ids(question)}
        final = None
        request_id = "learn-" + secrets.token_hex(8)
        async for output in self.engine.generate(prompt, params, request_id):
            final = output
        if final is None:
            return "", 0
        completion = final.outputs[0]
        return completion.text, len(completion.token_ids)

    def _prompt_ids(self, question: str) -> list[int]:
        messages = [{"role": "user", "content": question}]
        if getattr(self.tokenizer, "chat_template", None):
            return list(
                self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        return self.tokenizer.encode(f"Question: {question}\nAnswer:")


def _unlearned(row: TargetRow, learned: Learned | None) -> bool:
    if learned is None or learned.version < row.version:
        return True
    return learned.status == "learning" and learned.updated_at < time.time() - STALE_AFTER
