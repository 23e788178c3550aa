"""One restricted step over a batch, as both vLLM processors run it, on CPU and on CUDA.

The processors hand `restrict_rows` logits on the engine's device and row states on the host;
on a GPU the step must move its data, launch the fused kernel and give exactly what the CPU
step gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from logits_processors.automaton import TokenAutomaton
from logits_processors.rows import RowState, penalty_csr, restrict_rows
from logits_processors.snapshot import Plan

VOCAB = 49_152  # the default model's vocabulary
BANNED_AFTER_5 = 6  # sequence (5, 6)
BANNED_ALWAYS = 7  # sequence (7,)
REFUSAL = (20, 21, 2)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


def _plan() -> Plan:
    return Plan(
        TokenAutomaton([(5, BANNED_AFTER_5), (BANNED_ALWAYS,)]),
        np.array([10, 11, 40_000], dtype=np.int64),
        np.array([2.0, 0.5, 8.0], dtype=np.float32),
        REFUSAL,
    )


def _step(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of 4: rows 1 (restricted, has just produced token 5) and 3 (refused) flagged."""
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(0)).to(dtype)
    states = [RowState(_plan(), "restrict", [5]), RowState(_plan(), "refuse", [20])]
    out = restrict_rows(logits.clone().to(device), [1, 3], states, penalty_csr(states, device))
    return logits, out.cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_flagged_rows_are_restricted_and_the_others_untouched(device, dtype):
    before, after = _step(device, dtype)
    assert torch.equal(after[[0, 2]], before[[0, 2]])  # bit for bit
    restricted, expected = after[1], before[1].clone()
    assert restricted[BANNED_AFTER_5] == restricted[BANNED_ALWAYS] == float("-inf")
    expected[[BANNED_AFTER_5, BANNED_ALWAYS]] = float("-inf")
    for tok, val in ((10, 2.0), (11, 0.5), (40_000, 8.0)):
        expected[tok] = (before[1, tok].float() - val).to(dtype)
    assert torch.equal(restricted, expected)
    refused = after[3]
    assert refused[REFUSAL[1]] == 0  # the refusal's next token, the only one possible
    assert torch.isinf(refused).sum() == VOCAB - 1  # and nothing else possible


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gpu_step_equals_the_cpu_step_bit_for_bit(dtype):
    assert torch.equal(_step("cuda", dtype)[1], _step("cpu", dtype)[1])
