"""The forget processor on fake batches: unflagged rows untouched, flagged rows restricted."""

from __future__ import annotations

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from guard_server.store import SQLiteStore, TargetRow
from logits_processors.compiled import CompiledTarget
from logits_processors.forget import ForgetLogitsProcessor
from logits_processors.params import ACTION_KEY, TARGETS_KEY
from logits_processors.snapshot import SNAPSHOT_DB_ENV

VOCAB = 32
EOS = 31
TARGET = CompiledTarget(
    target_id="t1",
    version=1,
    policy="refuse",
    sequences=((3, 4, 5), (7,)),
    penalty_ids=(10, 11),
    penalty_vals=(1.0, 0.5),
    refusal=(20, 21, 22, EOS),
    strength=2.0,
    note=(25, 26, EOS),
)


@pytest.fixture
def processor(tmp_path, monkeypatch):
    db = tmp_path / "guard.db"
    store = SQLiteStore(db)
    store.insert(TargetRow("t1", "t1", 1, "active", {"name": "t1"}))
    store.put_compiled("t1", 1, TARGET.to_bytes())
    monkeypatch.setenv(SNAPSHOT_DB_ENV, str(db))
    return ForgetLogitsProcessor(None, torch.device("cpu"), is_pin_memory=False)


def params(action: str | None = None, max_tokens: int = 16) -> SamplingParams:
    if action is None:
        return SamplingParams(temperature=0.0, max_tokens=max_tokens)
    return SamplingParams(
        temperature=0.0,
        max_tokens=max_tokens,
        extra_args={TARGETS_KEY: ["t1@1"], ACTION_KEY: action},
    )


def add(proc, rows, batch_size):
    proc.update_state(BatchUpdate(batch_size=batch_size, removed=[], added=rows, moved=[]))


def test_unflagged_batch_returns_the_same_tensor(processor):
    out0, out1 = [], []
    add(processor, [(0, params(), [1, 2], out0), (1, params(), [1], out1)], 2)
    logits = torch.randn(2, VOCAB)
    assert processor.apply(logits) is logits
    assert not processor.is_argmax_invariant()


def test_restrict_row_bans_completions_and_penalises_only_its_row(processor):
    out_free, out_flag = [], []
    add(processor, [(0, params(), [1], out_free), (1, params("restrict"), [1], out_flag)], 2)
    logits = torch.zeros(2, VOCAB)
    before = logits.clone()
    processor.apply(logits)
    assert torch.equal(logits[0], before[0])
    assert logits[1, 7] == float("-inf")  # single-token phrase: banned at every step
    assert logits[1, 5] == 0.0  # (3, 4, 5) not started yet
    assert logits[1, 10] == pytest.approx(-2.0) and logits[1, 11] == pytest.approx(-1.0)
    out_flag.extend([3, 4])  # vLLM appends generated tokens to the live list
    logits = torch.zeros(2, VOCAB)
    processor.apply(logits)
    assert logits[1, 5] == float("-inf")
    assert torch.equal(logits[0], torch.zeros(VOCAB))


def test_sequence_started_in_the_prompt_is_still_banned(processor):
    out = []
    add(processor, [(0, params("restrict"), [9, 3, 4], out)], 1)
    logits = torch.zeros(1, VOCAB)
    processor.apply(logits)
    assert logits[0, 5] == float("-inf")


def test_refuse_row_is_forced_through_the_refusal_then_eos(processor):
    out = []
    add(processor, [(0, params("refuse"), [1], out)], 1)
    produced = []
    for _ in range(6):
        logits = torch.randn(1, VOCAB)
        token = int(processor.apply(logits).argmax())
        produced.append(token)
        out.append(token)
    assert produced[:4] == [20, 21, 22, EOS]
    assert produced[4:] == [EOS, EOS]


def run(processor, out, steps, wants_end_at=()):
    """Greedy steps; the model prefers a banned phrase (7), then token 12, or EOS when asked."""
    produced, last = [], None
    for step in range(steps):
        logits = torch.zeros(1, VOCAB)
        logits[0, 7], logits[0, 12] = 5.0, 4.0
        if step in wants_end_at:
            logits[0, EOS] = 9.0
        last = processor.apply(logits)
        produced.append(int(last.argmax()))
        out.append(produced[-1])
    return produced, last


def test_partial_row_answers_under_bans_and_ends_with_its_note(processor):
    out = []
    add(processor, [(0, params("partial"), [1], out)], 1)
    produced, last = run(processor, out, 2)
    assert produced == [12, 12]  # free, but the phrase stays banned
    assert last[0, 7] == float("-inf") and last[0, 10] == pytest.approx(-2.0)
    assert last[0, EOS] == float("-inf")  # it may not end without the note
    produced, _ = run(processor, out, 5, wants_end_at={0})
    assert produced == [25, 26, EOS, EOS, EOS]  # the model wanted to end: the note instead


def test_partial_note_starts_when_only_it_still_fits(processor):
    out = []
    add(processor, [(0, params("partial", max_tokens=5), [1], out)], 1)
    produced, _ = run(processor, out, 5)
    assert produced == [12, 12, 25, 26, EOS]


def test_moves_and_removals_follow_the_request(processor):
    out_flag, out_free = [], []
    add(processor, [(0, params("restrict"), [1], out_flag), (1, params(), [1], out_free)], 2)
    processor.update_state(
        BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)])
    )
    logits = torch.zeros(2, VOCAB)
    processor.apply(logits)
    assert logits[1, 7] == float("-inf") and logits[0, 7] == 0.0
    processor.update_state(BatchUpdate(batch_size=1, removed=[1], added=[], moved=[]))
    logits = torch.zeros(1, VOCAB)
    assert processor.apply(logits) is logits and torch.equal(logits, torch.zeros(1, VOCAB))


@pytest.mark.parametrize(
    "extra_args, fragment",
    [
        ({TARGETS_KEY: ["t1"]}, "malformed entry"),
        ({TARGETS_KEY: ["t1@1"], ACTION_KEY: "nope"}, "forget_action"),
    ],
)
def test_validate_params_rejects_malformed_extra_args(extra_args, fragment):
    with pytest.raises(ValueError, match=fragment):
        ForgetLogitsProcessor.validate_params(SamplingParams(extra_args=extra_args))


def test_unknown_target_version_fails_loudly_without_an_eos(processor):
    bad = SamplingParams(extra_args={TARGETS_KEY: ["t1@9"]})
    with pytest.raises(KeyError, match="t1@9"):
        add(processor, [(0, bad, [1], [])], 1)


def test_unknown_target_version_fails_closed_with_an_eos(processor):
    processor.eos_token_id = EOS
    add(processor, [(0, SamplingParams(extra_args={TARGETS_KEY: ["gone@3"]}), [1], [])], 1)
    logits = torch.randn(1, VOCAB)
    assert int(processor.apply(logits).argmax()) == EOS
    assert torch.isinf(logits[0, :EOS]).all()
