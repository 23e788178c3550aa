"""The answer watch inside both processors (vLLM V1 and Model Runner V2), on fake logits and a
toy vocabulary: every request is watched, flagged or not, and only rows about to complete a
registered name are touched."""

from __future__ import annotations

import pytest
import torch
from vllm.v1.sample.logits_processor import BatchUpdate

from guard_server.store import SQLiteStore, TargetRow
from logits_processors.forget_v2 import ForgetLogitsProcessorV2
from logits_processors.vocab import VocabIndex
from tests.unit.test_processor import EOS, VOCAB, params, processor  # noqa: F401
from tests.unit.test_processor_v2 import Runner

PIECES = [b""] * VOCAB
PIECES[1:8] = [b" the", b" Harry", b" Pot", b"ter", b" is", b" house", b" Potter"]
NOTE = (20, 21, EOS)
HARRY, POT, TER, HOUSE, POTTER = 2, 3, 4, 6, 7


@pytest.fixture
def watched(processor, monkeypatch):  # noqa: F811 - the V1 fixture sets up the registry
    monkeypatch.setattr(
        "logits_processors.watcher.vocabulary_of", lambda _config: (VocabIndex(PIECES), NOTE)
    )
    store = SQLiteStore(processor.snapshot.db_path)
    store.put_watch(TargetRow("hp", "Harry Potter", 1, "active", {}), ["Harry Potter"])
    return store


def v1(processor):  # noqa: F811
    return type(processor)(None, torch.device("cpu"), is_pin_memory=False)


def add(proc, rows):
    proc.update_state(BatchUpdate(batch_size=len(rows), removed=[], added=rows, moved=[]))


def test_an_unflagged_answer_that_would_name_a_target_trips_and_writes_the_note(
    processor,  # noqa: F811
    watched,
):
    proc = v1(processor)
    out_free, out_named = [1], [HARRY, POT]
    add(proc, [(0, params(), [1], out_free), (1, params(), [1], out_named)])
    logits = torch.zeros(2, VOCAB)
    logits[1, TER] = 3.0  # the model goes on with the name
    before = logits.clone()
    proc.apply(logits)
    assert torch.equal(logits[0], before[0])  # nothing to ban: untouched, bit for bit
    assert int(logits[1].argmax()) == NOTE[0] and torch.isinf(logits[1, TER])
    for token in NOTE[:2]:
        out_named.append(token)
        logits = torch.zeros(2, VOCAB)
        proc.apply(logits)
        assert int(logits[1].argmax()) == NOTE[NOTE.index(token) + 1]


def test_an_answer_that_only_could_name_a_target_keeps_its_own_choice(
    processor,  # noqa: F811
    watched,
):
    proc = v1(processor)
    out = [HARRY, POT]
    add(proc, [(0, params(), [1], out)])
    logits = torch.zeros(1, VOCAB)
    logits[0, HOUSE] = 3.0
    proc.apply(logits)
    assert int(logits[0].argmax()) == HOUSE
    assert torch.isinf(logits[0, TER]) and not torch.isinf(logits[0, POTTER])


def test_a_target_registered_while_rows_run_is_watched_from_the_next_arrival(
    processor,  # noqa: F811
    watched,
):
    proc = v1(processor)
    out = [1]
    add(proc, [(0, params(), [1], out)])
    watched.put_watch(TargetRow("hs", "the house", 1, "active", {}), ["the house"])
    logits = torch.zeros(1, VOCAB)
    out.append(1)  # " the"
    proc.apply(logits)
    assert not torch.isinf(logits).any()  # not yet: no request has arrived since
    add(proc, [(1, params(), [1], [])])
    logits = torch.zeros(2, VOCAB)
    proc.apply(logits)
    assert torch.isinf(logits[0, HOUSE])


@pytest.mark.parametrize("wanted", [TER, HOUSE])
def test_v2_watches_exactly_as_v1(processor, watched, wanted):  # noqa: F811
    proc1 = v1(processor)
    runner = Runner()
    proc2 = ForgetLogitsProcessorV2(None, runner.state)
    out: list[int] = []
    add(proc1, [(0, params(), [1, 2], out)])
    assert runner.admit(proc2, 3, params(), [1, 2]) is True  # watched: not declined
    for step in range(6):
        logits = torch.zeros(1, VOCAB)
        logits[0, [POT, wanted][min(step, 1)]] = 3.0
        one, two = logits.clone(), logits.clone()
        proc1.apply(one)
        proc2.apply(two, runner.ctx([3]))
        assert torch.equal(one, two)
        token = int(one.argmax())
        out.append(token)
        runner.commit(3, token)
    assert (NOTE[0] in out) == (wanted == TER)


PIECES[8:12] = [b" Pamela", b" Spring", b"steen", b" Xavier"]
PAMELA, SPRING, STEEN, XAVIER, IS = 8, 9, 10, 11, 5


@pytest.mark.parametrize(
    "prompt, excused",
    [([PAMELA, SPRING, STEEN, IS], True), ([PAMELA, IS], False), ([XAVIER, IS], False)],
)
def test_both_processors_read_the_whole_prompt_for_a_relative(
    processor,  # noqa: F811
    watched,
    prompt,
    excused,
):
    """ "Pamela Springsteen" named whole in the prompt is someone else; "Pamela" or
    "Xavier" alone excuses no surname. Both processors hand the watch the whole prompt."""
    watched.put_watch(TargetRow("bs", "Bruce Springsteen", 1, "active", {}), ["Bruce Springsteen"])
    proc1, runner = v1(processor), Runner()
    proc2 = ForgetLogitsProcessorV2(None, runner.state)
    out: list[int] = []
    add(proc1, [(0, params(), prompt, out)])
    runner.admit(proc2, 3, params(), prompt)
    for token in (prompt[0], SPRING):
        out.append(token)
        runner.commit(3, token)
    one = torch.zeros(1, VOCAB)
    one[0, STEEN] = 3.0
    two = one.clone()
    proc1.apply(one)
    proc2.apply(two, runner.ctx([3]))
    assert torch.equal(one, two)
    assert (int(one.argmax()) == STEEN) is excused
