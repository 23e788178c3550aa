"""FLAT (Wang et al., ICLR 2025): loss adjustment with only forget data, KL f-divergence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guard_server.unlearn.base import GoodAnswerConfig, TeachesGoodAnswer, register_method
from guard_server.unlearn.ga import GradientAscent
from guard_server.unlearn.losses import mean_token_prob

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch


@dataclass(frozen=True)
class FLATConfig(GoodAnswerConfig):
    pass


@register_method("flat", FLATConfig)
class FLAT(TeachesGoodAnswer, GradientAscent):
    """loss = -mean(g(good)) + mean(exp(g(bad) - 1)): the variational form of KL, with the
    template answer as the good response and the forget answer as the bad one.

    g is the per-sequence mean token probability, not the log-probability: a log-prob is
    unbounded below and exp(log p - 1) = p / e vanishes on long answers, while the mean
    probability stays in [0, 1] and keeps a useful gradient on both terms. No retain data
    is used.
    """

    config: FLATConfig

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        good = mean_token_prob(model, self.good_rows(batch))
        bad = mean_token_prob(model, batch.forget)
        loss = -good.mean() + torch.exp(bad - 1).mean()
        logs = {"good_prob": float(good.detach().mean()), "bad_prob": float(bad.detach().mean())}
        return loss, logs
