"""Verdicts become extra args; client-sent guard keys never reach the engine."""

from guard_server.guard import Flag, Verdict, apply_verdict, conversation_texts
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
