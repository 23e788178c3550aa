"""Verdicts become extra args; client-sent guard keys never reach the engine."""

import pytest

from guard_server.guard import (
    Flag,
    Verdict,
    apply_verdict,
    conversation_texts,
    decide,
    merge,
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
    assert verdict.report(admin=True)["targets"][0]["evidence"] == "alias"


def test_a_client_learns_the_action_but_never_which_target_or_why():
    verdict = Verdict(flags=(Flag("hp", 2, 0.91, "lexical:hogwarts"),), action="refuse")
    report = verdict.report()
    assert report == {"flagged": True, "action": "refuse"}
    assert "hogwarts" not in str(report) and "0.91" not in str(report)


def test_conversation_texts_reads_every_turn_and_text_parts():
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "image_url"}]},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "third turn"},
    ]
    assert conversation_texts(messages) == ["be nice", "part one", "answer", "third turn"]


def test_conversation_texts_reads_every_part_type_the_template_may_render():
    messages = [
        {"role": "user", "content": [{"type": "input_text", "text": "input text part"}]},
        {"role": "user", "content": ["a bare string part"]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "a refusal part"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "a thought"}]},
        {"role": "assistant", "reasoning_content": "reasoning", "content": None},
        {
            "role": "assistant",
            "tool_calls": [{"type": "function", "function": {"arguments": "tool args"}}],
        },
    ]
    texts = conversation_texts(messages)
    for expected in (
        "input text part",
        "a bare string part",
        "a refusal part",
        "a thought",
        "reasoning",
        "tool args",
    ):
        assert expected in texts
    assert "input_text" not in texts and "function" not in texts


HP = Flag("hp", 1, 0.9)
AE = Flag("ae", 1, 0.8)


@pytest.mark.parametrize(
    ("first", "second", "action", "targets"),
    [
        (Verdict(), Verdict(), "none", []),
        (Verdict((HP,), "refuse"), Verdict(), "refuse", ["hp"]),
        (Verdict(), Verdict((HP,), "partial", ("2+2?",)), "partial", ["hp"]),
        # One prompt of the request was refused: the request's report says so.
        (Verdict((HP,), "partial", ("2+2?",)), Verdict((AE,), "refuse"), "refuse", ["hp", "ae"]),
        (Verdict((HP,), "restrict"), Verdict((HP,), "refuse"), "refuse", ["hp"]),
    ],
)
def test_merging_the_verdicts_of_a_requests_prompts_never_weakens_either(
    first, second, action, targets
):
    merged = merge(first, second)
    assert merged.action == action
    assert sorted(f.target_id for f in merged.flags) == sorted(targets)
    assert merged.keep == (("2+2?",) if action == "partial" else ())


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


def test_a_partial_verdict_reports_and_sends_what_it_answers():
    partial = Verdict((Flag("hp", 1, 0.9),), "partial", ("What is 2+2",))
    assert partial.report()["answered"] == ["What is 2+2"]
    assert apply_verdict(None, partial)[ACTION_KEY] == "partial"


def test_prompts_that_cannot_be_cut_into_turns_are_refused_not_answered_in_part():
    partial = Verdict((Flag("hp", 1, 0.9),), "partial", ("What is 2+2",))
    assert partial.without_partial() == Verdict(partial.flags, "refuse")
    refuse = Verdict((Flag("hp", 1, 0.9),), "refuse")
    assert refuse.without_partial() is refuse


def test_refusals_are_counted_by_the_name_a_person_reads():
    from guard_server import metrics
    from guard_server.guard import count

    flag = Flag("tgt_abc123", 1, 0.9, "lexical:Harry Potter", "Harry Potter")
    before = metrics.TARGET_HITS.labels("Harry Potter", "tgt_abc123")._value.get()
    count(Verdict((flag,), "refuse"))
    assert metrics.TARGET_HITS.labels("Harry Potter", "tgt_abc123")._value.get() == before + 1


def test_live_names_follow_the_store_from_the_next_read(tmp_path):
    from guard_server.guard import LiveNames
    from guard_server.store import SQLiteStore, TargetRow

    store = SQLiteStore(tmp_path / "guard.db")
    live = LiveNames(store)
    assert live.current().open_tail(["a school called", " Hog"]) == 0  # nothing registered
    store.insert(TargetRow("t1", "Hogwarts", 1, "active", {"name": "Hogwarts"}))
    assert live.current().open_tail(["a school called", " Hog"]) == 1
    store.delete("t1")
    assert live.current().open_tail(["a school called", " Hog"]) == 0


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("Then, you'll need to chop the", False),  # "The Boy Who Lived" begins so
        ("He thanked his father", False),  # "father of relativity"
        ("The empire was founded by Genghis", True),
        ("a school called Hog", True),
        ("the hero is known as the boy who", True),
        ("written by J. K. Row", True),
        ("written by J.K.Row", True),
    ],
)
def test_an_answer_is_held_at_its_end_only_where_it_begins_a_name(text, held):
    """An answer that ends on a name's first word when that word is a common English word
    ("the", "father") shows nothing of the name: it is sent (or kept, when a token limit cut
    it) as written. A rarer word, part of a word or several words of a name are held."""
    from types import SimpleNamespace

    from guard_server.guard import NameIndex

    spec = {"name": "Harry Potter", "aliases": ["The Boy Who Lived", "Hogwarts", "J.K. Rowling"]}
    specs = [spec, {"name": "Albert Einstein", "aliases": ["father of relativity"]}]
    index = NameIndex(SimpleNamespace(spec=s) for s in [*specs, {"name": "Genghis Khan"}])
    assert bool(index.open_tail(list(text))) is held


@pytest.mark.parametrize(
    "text, name",
    [
        ("written by Harry1 Pot", "Harry1 Pot"),
        ("written by Harry @@@@ Pot", "Harry @@@@ Pot"),
        ("written by Har-ry Pot-t", "Har-ry Pot-t"),
        ("written by J. K. Row", "J. K. Row"),
    ],
)
def test_an_open_name_is_held_from_its_first_letter_however_it_is_marked(text, name):
    from types import SimpleNamespace

    from guard_server.guard import NameIndex

    index = NameIndex(SimpleNamespace(spec={"name": n}) for n in ("Harry Potter", "J.K. Rowling"))
    assert index.open_tail(list(text)) >= len(name)
