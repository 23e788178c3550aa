"""Verdicts become extra args; client-sent guard keys never reach the engine."""

import pytest

from guard_server.guard import (
    Flag,
    Verdict,
    apply_verdict,
    conversation_texts,
    decide,
    keep_only,
)
from logits_processors.params import ACTION_KEY, TARGETS_KEY, parse_guard_params


def test_unflagged_request_keeps_its_own_xargs_and_loses_guard_keys():
    sent = {"mine": 1, TARGETS_KEY: ["spoof@1"], ACTION_KEY: "refuse"}
    assert apply_verdict(sent, Verdict()) == {"mine": 1}
    assert apply_verdict(None, Verdict()) is None
    assert apply_verdict({TARGETS_KEY: ["x@1"]}, Verdict()) is None


def test_flagged_verdict_round_trips_through_the_processor_parser():
    verdict = Verdict(flags=(Flag("hp", 2, 0.9, "alias"), Flag("ae", 1, 0.7)), action="refuse")
    xargs = apply_verdict({"mine": "x"}, verdict)
    parsed = parse_guard_params(xargs)
    assert [(r.target_id, r.version) for r in parsed.targets] == [("hp", 2), ("ae", 1)]
    assert parsed.action == "refuse"
    assert xargs["mine"] == "x"
    assert verdict.header() == "hp,ae"
    assert verdict.report()["targets"][0]["evidence"] == "alias"


def test_conversation_texts_reads_every_turn_and_text_parts():
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "image_url"}]},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "third turn"},
    ]
    assert conversation_texts(messages) == ["be nice", "part one", "answer", "third turn"]


@pytest.mark.parametrize(
    ("policies", "others", "expected"),
    [
        ({"refuse"}, [], ("refuse", ())),
        ({"refuse"}, ["What is 2+2?"], ("partial", ("What is 2+2?",))),
        ({"restrict"}, [], ("restrict", ())),
        ({"restrict"}, ["What is 2+2?"], ("restrict", ())),
        ({"refuse", "restrict"}, ["What is 2+2?"], ("restrict", ())),
    ],
)
def test_decide(policies, others, expected):
    assert decide(policies, others) == expected


def test_partial_verdict_keeps_only_the_other_clauses_of_the_last_user_turn():
    messages = [
        {"role": "user", "content": "Who wrote Harry Potter?"},
        {"role": "assistant", "content": "I can't say."},
        {"role": "user", "content": "What is 2+2, and who is Harry Potter?"},
        {"role": "assistant", "content": "prefill"},
    ]
    partial = Verdict((Flag("hp", 1, 0.9),), "partial", ("What is 2+2",))
    keep_only(messages, partial)
    assert [m["content"] for m in messages] == [
        "Who wrote Harry Potter?",
        "I can't say.",
        "What is 2+2",
        "prefill",
    ]
    assert partial.report()["answered"] == ["What is 2+2"]
    assert apply_verdict(None, partial)[ACTION_KEY] == "partial"


@pytest.mark.parametrize("action", ["refuse", "restrict"])
def test_other_verdicts_leave_the_messages_alone(action):
    messages = [{"role": "user", "content": "What is 2+2, and who is Harry Potter?"}]
    keep_only(messages, Verdict((Flag("hp", 1, 0.9),), action))
    assert messages[0]["content"] == "What is 2+2, and who is Harry Potter?"


def test_raw_prompts_get_restrict_instead_of_partial():
    partial = Verdict((Flag("hp", 1, 0.9),), "partial", ("What is 2+2",))
    assert partial.without_partial() == Verdict(partial.flags, "restrict")
    refuse = Verdict((Flag("hp", 1, 0.9),), "refuse")
    assert refuse.without_partial() is refuse
