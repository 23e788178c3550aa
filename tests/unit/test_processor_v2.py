"""The forget processor through Model Runner V2's own interface, on CPU tensors: slots, rows
reordered every step, token history read from the runner's buffers; same answers as V1."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from vllm.v1.sample.logits_processor import BatchUpdate
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState

from logits_processors.forget_v2 import ForgetLogitsProcessorV2
from tests.unit.test_processor import EOS, VOCAB, params, processor  # noqa: F401

MAX_REQS, MAX_LEN = 4, 64


class Runner:
    """The parts of MRV2's request state a logits processor reads: token history per slot,
    prompt and total lengths (CPU tensors in place of the device buffers)."""

    def __init__(self):
        self.tokens = torch.zeros(MAX_REQS, MAX_LEN, dtype=torch.int32)
        self.total = torch.zeros(MAX_REQS, dtype=torch.int32)
        self.prompt = np.zeros(MAX_REQS, dtype=np.int32)
        self.state = LogitsProcRequestState(
            device=torch.device("cpu"),
            max_num_reqs=MAX_REQS,
            vocab_size=VOCAB,
            all_token_ids=SimpleNamespace(gpu=self.tokens),
            prompt_len=SimpleNamespace(np=self.prompt),
            prefill_len=SimpleNamespace(np=self.prompt),
            total_len=SimpleNamespace(gpu=self.total),
        )

    def admit(self, proc, slot: int, sampling_params, prompt: list[int]) -> bool:
        self.tokens[slot, : len(prompt)] = torch.tensor(prompt)
        self.prompt[slot] = self.total[slot] = len(prompt)
        return proc.add_request(slot, sampling_params)

    def commit(self, slot: int, token: int) -> None:
        self.tokens[slot, self.total[slot]] = token
        self.total[slot] += 1

    @staticmethod
    def ctx(slots: list[int]) -> LogitsContext:
        mapping = torch.tensor(slots, dtype=torch.int32)
        zeros = torch.zeros(len(slots), dtype=torch.int64)
        return LogitsContext(
            expanded_idx_mapping=mapping,
            idx_mapping=mapping,
            idx_mapping_np=mapping.numpy(),
            expanded_local_pos=zeros,
            input_ids=zeros,
            pos=zeros,
            seq_lens_upper_bound_np=np.zeros(len(slots), dtype=np.int32),
        )


@pytest.fixture
def v2(processor):  # noqa: F811 - the V1 fixture sets up the registry file
    runner = Runner()
    return ForgetLogitsProcessorV2(None, runner.state), runner


def test_unflagged_slots_are_declined_and_returned_untouched(v2):
    proc, runner = v2
    assert runner.admit(proc, 2, params(), [1, 2]) is False
    logits = torch.randn(1, VOCAB)
    before = logits.clone()
    assert proc.apply(logits, runner.ctx([2])) is logits and torch.equal(logits, before)


def test_bans_follow_the_slot_through_reordered_rows(v2):
    proc, runner = v2
    assert runner.admit(proc, 3, params("restrict"), [1])
    runner.admit(proc, 0, params(), [1])
    logits = torch.zeros(2, VOCAB)
    proc.apply(logits, runner.ctx([3, 0]))
    assert logits[0, 7] == float("-inf") and logits[1, 7] == 0.0
    assert logits[0, 10] == pytest.approx(-2.0)
    runner.commit(3, 3)
    runner.commit(3, 4)
    logits = torch.zeros(2, VOCAB)
    proc.apply(logits, runner.ctx([0, 3]))  # rows swapped this step
    assert logits[1, 5] == float("-inf") and torch.equal(logits[0], torch.zeros(VOCAB))


def test_a_sequence_started_in_the_prompt_is_banned(v2):
    proc, runner = v2
    runner.admit(proc, 1, params("restrict"), [9, 3, 4])
    logits = torch.zeros(1, VOCAB)
    proc.apply(logits, runner.ctx([1]))
    assert logits[0, 5] == float("-inf")


def test_refuse_is_forced_then_the_slot_is_reused_unflagged(v2):
    proc, runner = v2
    runner.admit(proc, 0, params("refuse"), [1])
    produced = []
    for _ in range(5):
        token = int(proc.apply(torch.randn(1, VOCAB), runner.ctx([0])).argmax())
        produced.append(token)
        runner.commit(0, token)
    assert produced == [20, 21, 22, EOS, EOS]
    assert runner.admit(proc, 0, params(), [1]) is False
    logits = torch.randn(1, VOCAB)
    assert proc.apply(logits, runner.ctx([0])) is logits


@pytest.mark.parametrize("action", ["refuse", "restrict", "partial"])
def test_v2_restricts_exactly_as_v1(processor, v2, action):  # noqa: F811
    proc, runner = v2
    out: list[int] = []
    processor.update_state(
        BatchUpdate(batch_size=1, removed=[], added=[(0, params(action, 8), [1, 3], out)], moved=[])
    )
    runner.admit(proc, 2, params(action, 8), [1, 3])
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        logits = torch.randn(1, VOCAB, generator=generator)
        logits[0, 4] += 3.0  # the model leans towards continuing (3, 4, 5)
        one, two = logits.clone(), logits.clone()
        processor.apply(one)
        proc.apply(two, runner.ctx([2]))
        assert torch.equal(one, two)
        token = int(one.argmax())
        out.append(token)
        runner.commit(2, token)


def test_a_reused_slot_gets_its_new_requests_penalties(v2):
    # The penalty CSR is kept while the flagged slots stay the same: a slot that now holds
    # another request must not keep the last one's (a refusal has none).
    proc, runner = v2
    runner.admit(proc, 0, params("refuse"), [1])
    proc.apply(torch.zeros(1, VOCAB), runner.ctx([0]))
    runner.admit(proc, 0, params("restrict"), [1])
    logits = torch.zeros(1, VOCAB)
    proc.apply(logits, runner.ctx([0]))
    assert logits[0, 10] == pytest.approx(-2.0)
