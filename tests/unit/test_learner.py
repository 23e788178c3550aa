"""The learner against a real registry on disk and a stand-in engine (the outside boundary):
what it asks, what it keeps, and how replicas share the work."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from classifiers.associations import QUESTIONS
from guard_server import learner
from guard_server.learner import MAX_TOKENS, Learner, learning_status
from guard_server.store import SQLiteStore, TargetRow
from logits_processors.params import unwatched

ANSWER = 'Bruce Lee founded Jeet Kune Do and starred in "Enter the Dragon" in Hong Kong.'


class Engine:
    """Answers every question with ANSWER, or fails (`errored`: because it has stopped)."""

    def __init__(self, fail: bool = False, errored: bool = False):
        self.asked: list = []
        self.fail = fail
        self.errored = errored

    async def generate(self, prompt, params, request_id):
        self.asked.append((prompt, params))
        if self.fail:
            raise RuntimeError("engine gone")
        completion = SimpleNamespace(text=ANSWER, token_ids=[1] * 20)
        yield SimpleNamespace(outputs=[completion], finished=True)


class Tokenizer:
    chat_template = None

    def encode(self, text):
        return [ord(c) for c in text]


def store_with(tmp_path, *names: str) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "guard.db")
    for i, name in enumerate(names):
        store.insert(TargetRow(f"t{i}", name, 1, "active", {"name": name}))
    return store


def test_each_target_is_asked_the_questions_unwatched_and_its_phrases_kept(tmp_path):
    from prometheus_client import REGISTRY

    def learned() -> float:
        return REGISTRY.get_sample_value("guard_targets_learned_total", {"status": "done"}) or 0

    done = learned()
    store, engine = store_with(tmp_path, "Bruce Lee"), Engine()
    assert asyncio.run(Learner(store, engine, Tokenizer()).learn_pending()) == 1
    assert learned() == done + 1  # on /metrics
    assert len(engine.asked) == len(QUESTIONS)
    for _, params in engine.asked:
        assert unwatched(params.extra_args) and params.max_tokens == MAX_TOKENS
        assert params.temperature == 0
    state = learning_status(store.get("t0"), store.learned()["t0"])
    assert state["status"] == "done"
    assert sorted(state["associations"]) == ["Enter the Dragon", "Hong Kong", "Jeet Kune Do"]
    assert state["tokens"] == 20 * len(QUESTIONS)
    # Nothing new registered: nothing asked again.
    assert asyncio.run(Learner(store, engine, Tokenizer()).learn_pending()) == 0


def test_a_failed_engine_is_recorded_and_the_target_stays_enforced_on_what_is_known(tmp_path):
    store = store_with(tmp_path, "Bruce Lee")
    asyncio.run(Learner(store, Engine(fail=True), Tokenizer()).learn_pending())
    assert learning_status(store.get("t0"), store.learned()["t0"]) == {
        "status": "failed",
        "associations": [],
        "error": "RuntimeError",
    }


def test_a_stopped_engine_leaves_the_claim_to_go_stale_not_a_failure(tmp_path):
    store = store_with(tmp_path, "Bruce Lee")
    with pytest.raises(RuntimeError):
        asyncio.run(Learner(store, Engine(fail=True, errored=True), Tokenizer()).learn_pending())
    assert store.learned()["t0"].status == "learning"  # retaken once stale


def test_a_version_another_replica_is_learning_is_left_to_it_until_that_replica_goes_quiet(
    tmp_path, monkeypatch
):
    store = store_with(tmp_path, "Bruce Lee", "Chuck Norris")
    assert store.claim_learning("t0", 1, stale_after=60)  # another replica took it
    engine = Engine()
    mine = Learner(store, engine, Tokenizer())
    assert asyncio.run(mine.learn_pending()) == 1  # t1 only
    assert store.learned()["t0"].status == "learning"
    monkeypatch.setattr(learner, "STALE_AFTER", -1.0)  # ... and went quiet
    assert asyncio.run(mine.learn_pending()) == 1  # looked again though nothing was written
    assert store.learned()["t0"].status == "done"


def test_a_target_not_yet_active_or_not_yet_learned_says_so():
    row = TargetRow("t0", "X", 2, "compiling", {"name": "X"})
    assert learning_status(row, None) == {"status": "waiting"}
    active = TargetRow("t0", "X", 2, "active", {"name": "X"})
    assert learning_status(active, None) == {"status": "pending"}
