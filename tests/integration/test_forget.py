"""Flagged requests on the real engine: refusal, restriction, and no effect on neighbours."""

from __future__ import annotations

import pytest

from guard_server.compiler import PARTIAL_NOTE
from logits_processors.params import ACTION_KEY, TARGETS_KEY
from tests.integration.conftest import (
    BATCH,
    FORGET_PROMPT,
    MAX_TOKENS,
    chats,
    greedy,
    token_ids,
)

LEAKS = ("hogwarts", "rowling", "hermione")


def flagged(action: str):
    return greedy(extra_args={TARGETS_KEY: ["hp@1"], ACTION_KEY: action})


def answer(llm, prompt: str, params) -> str:
    return llm.chat(chats([prompt]), params, use_tqdm=False)[0].outputs[0].text


def test_the_unguarded_answer_leaks(reference_outputs, llm):
    text = llm.get_tokenizer().decode(reference_outputs[-1])
    assert "hogwarts" in text.lower()


def test_refuse_answers_with_the_honest_refusal(llm):
    out = llm.chat(chats([FORGET_PROMPT]), flagged("refuse"), use_tqdm=False)[0].outputs[0]
    assert out.text == "I'm sorry, I can't share information about that."
    assert out.finish_reason == "stop"


def test_restrict_no_longer_leaks_and_never_emits_a_forbidden_sequence(llm, compiled_db):
    _, compiled = compiled_db
    out = llm.chat(chats([FORGET_PROMPT]), flagged("restrict"), use_tqdm=False)[0].outputs[0]
    assert not any(word in out.text.lower() for word in LEAKS), out.text
    ids = list(out.token_ids)
    for seq in compiled.sequences:
        n = len(seq)
        assert all(tuple(ids[i : i + n]) != seq for i in range(len(ids) - n + 1)), seq


def test_partial_answers_without_leaking_and_ends_with_its_note(llm):
    out = llm.chat(chats([FORGET_PROMPT]), flagged("partial"), use_tqdm=False)[0].outputs[0]
    assert out.text.endswith("\n\n" + PARTIAL_NOTE), out.text
    assert len(out.text) > len(PARTIAL_NOTE) + 2 and out.finish_reason == "stop"
    assert not any(word in out.text.lower() for word in LEAKS), out.text


@pytest.mark.parametrize("action", ["refuse", "restrict", "partial"])
def test_mixed_batch_leaves_unflagged_rows_bit_identical(llm, reference_outputs, action):
    params = [greedy()] * (len(BATCH) - 1) + [flagged(action)]
    outputs = token_ids(llm.chat(chats(BATCH), params, use_tqdm=False))
    assert outputs[:-1] == reference_outputs[:-1]
    assert outputs[-1] != reference_outputs[-1]
    assert len(outputs[-1]) <= MAX_TOKENS
