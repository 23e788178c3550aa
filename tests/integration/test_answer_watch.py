"""The answer watch on the real engine: every request is watched, flagged or not; an answer that
names no registered target comes out exactly as it did before anything was registered, and one
about to name a target ends with the refusal note instead."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest

from guard_server.store import SQLiteStore, TargetRow
from logits_processors.fold import fold
from tests.integration.conftest import chats, greedy, token_ids
from tests.prompts import RETAIN_PROMPTS

# Names the retain prompts' answers do not hold (checked below), and a made-up one.
WATCHED = {
    "w-hp": ["Harry Potter", "Hogwarts", "J.K. Rowling"],
    "w-zq": ["Zorblax Quimby"],
}
FORCED = "The answer is Zorblax Quimby."


@contextmanager
def watching(db):
    """The names above registered for the answer watch (as a registration publishes them),
    removed again afterwards: the rest of this tier runs without them."""
    store = SQLiteStore(db)
    for target_id, names in WATCHED.items():
        store.put_watch(TargetRow(target_id, names[0], 1, "active", {}), names)
    try:
        yield
    finally:
        for target_id in WATCHED:
            store.delete(target_id)


def test_answers_that_name_no_target_are_bit_identical_with_every_request_watched(llm, compiled_db):
    before = token_ids(llm.chat(chats(RETAIN_PROMPTS), greedy(), use_tqdm=False))
    texts = [llm.get_tokenizer().decode(ids) for ids in before]
    names = [fold(n) for names in WATCHED.values() for n in names]
    assert not any(n in fold(t) for t in texts for n in names)  # what this test relies on
    with watching(compiled_db[0]):
        after = token_ids(llm.chat(chats(RETAIN_PROMPTS), greedy(), use_tqdm=False))
    assert after == before


@pytest.mark.parametrize(
    "forced, written",
    [
        (FORCED, "Zorblax Quimby"),
        ("The answer is iLoveHarryPotter.", "HarryPotter"),  # camel case
        ("The answer is Zorblax Qu!mby.", "Qu!mby"),  # "!" for an "i"
    ],
)
def test_a_grammar_that_forces_a_name_cannot_make_the_engine_complete_it(
    llm, compiled_db, forced, written
):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    params = SamplingParams(
        temperature=0.0,
        max_tokens=24,
        structured_outputs=StructuredOutputsParams(regex=re.escape(forced)),
    )
    prompt = "Who is the mayor of Zorbtown?"
    plain = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0].text
    assert plain == forced  # the grammar leaves the model no other answer
    with watching(compiled_db[0]):
        out = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0]
    assert written not in out.text, out.text
    assert fold("Zorblax Quimby") not in fold(out.text), out.text
