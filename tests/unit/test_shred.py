"""SHRED's targets: which answer tokens are demoted, and to what distribution."""

from __future__ import annotations

import math

import pytest
import torch

from guard_server.unlearn.shred import demoted_targets, forget_positions

# The paper's figure: a base model's five likeliest next tokens (0 is the answer's token).
FIGURE = torch.tensor([0.77, 0.12, 0.05, 0.03, 0.03])


def base_logp(probs: torch.Tensor, vocab: int = 8) -> torch.Tensor:
    """Log-probabilities over a small vocabulary whose first tokens carry `probs`."""
    full = torch.full((vocab,), 1e-9)
    full[: probs.numel()] = probs
    return (full / full.sum()).log()[None, :]


def dense(target: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """The first position's target as probabilities of tokens 0..size-1."""
    return torch.zeros(8).scatter(0, index[0], target[0])[:size]


def test_the_answers_token_alone_is_demoted_and_the_rest_renormalised():
    target, index, _ = demoted_targets(
        base_logp(FIGURE), torch.tensor([0]), torch.tensor([True]), top_k=5, nucleus=0.0
    )
    want = torch.tensor([0.0, 0.12, 0.05, 0.03, 0.03]) / 0.23
    torch.testing.assert_close(dense(target, index, 5), want, rtol=0, atol=1e-5)


def test_the_nucleus_goes_with_the_answers_token():
    # 0.77, 0.12, 0.05 reach 0.9 of the mass: what is left is the two 0.03 tokens.
    target, index, _ = demoted_targets(
        base_logp(FIGURE), torch.tensor([0]), torch.tensor([True]), top_k=5, nucleus=0.9
    )
    want = torch.tensor([0.0, 0, 0, 0.5, 0.5])
    torch.testing.assert_close(dense(target, index, 5), want, rtol=0, atol=1e-5)


def test_an_anchor_keeps_the_base_distribution_over_its_top_k():
    target, index, _ = demoted_targets(
        base_logp(FIGURE), torch.tensor([0]), torch.tensor([False]), top_k=3, nucleus=0.9
    )
    torch.testing.assert_close(target[0], FIGURE[:3] / FIGURE[:3].sum(), rtol=0, atol=1e-5)
    assert index[0].tolist() == [0, 1, 2]


def test_the_nucleus_is_read_over_the_whole_vocabulary_not_the_kept_tokens():
    # A confident model with a long tail: 0.8 on the answer, 0.2 spread over 1,000 tokens.
    # The top 0.9 of the mass is the answer and the 500 likeliest tail tokens; the target is
    # the next 64, whatever top_k's own share of the mass.
    tail = torch.linspace(2.0, 1.0, 1000)
    probs = torch.cat([torch.tensor([0.8]), 0.2 * tail / tail.sum()])
    logp = probs.log()[None, :]
    target, index, demoted = demoted_targets(logp, torch.tensor([0]), torch.tensor([True]), 64, 0.9)
    mass_before = probs.cumsum(0) - probs
    assert demoted[0].tolist() == (mass_before < 0.9).tolist()
    assert int(demoted.sum()) > 400 and not demoted[0, index[0]].any()
    assert int(index.min()) == int((mass_before < 0.9).sum())  # the likeliest tokens left
    torch.testing.assert_close(target.sum(), torch.tensor(1.0))
    token_only, _, _ = demoted_targets(logp, torch.tensor([0]), torch.tensor([True]), 64, 0.0)
    assert not torch.equal(token_only, target)


def test_a_position_whose_only_token_is_the_answer_has_no_target():
    target, _, _ = demoted_targets(
        base_logp(torch.tensor([1.0])), torch.tensor([0]), torch.tensor([True]), 2, 0.0
    )
    assert float(target.sum()) == pytest.approx(1.0)  # the second-likeliest (1e-9) takes it
    lone = torch.tensor([[0.0, -math.inf]])
    for nucleus in (0.0, 0.9):
        target, _, _ = demoted_targets(lone, torch.tensor([0]), torch.tensor([True]), 2, nucleus)
        assert float(target.sum()) == 0.0


@pytest.mark.parametrize(
    "share, want", [(0.5, [1, 3, 5]), (0.1, [1, 5]), (0.6, [1, 2, 3, 4, 5]), (1.0, list(range(6)))]
)
def test_each_row_demotes_its_own_least_likely_share(share, want):
    # Row 0 holds positions 0-3, row 1 positions 4-5; lower log-probability = more surprising.
    logp = torch.tensor([-0.1, -3.0, -0.2, -2.0, -0.5, -4.0])
    rows = torch.tensor([0, 0, 0, 0, 1, 1])
    chosen = forget_positions(logp, rows, share)
    assert chosen.nonzero().flatten().tolist() == want
