"""FLAT (Wang et al., ICLR 2025): loss adjustment with only forget data, KL f-divergence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guard_server.unlearn.base import UnlearnConfig, register_method, require
from guard_server.unlearn.ga import GradientAscent
from guard_server.unlearn.losses import mean_token_prob

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch

ERR_NO_GOOD = "flat needs batch.good: forget prompts answered with the good answer"


@dataclass(frozen=True)
class FLATConfig(UnlearnConfig):
    good_answer: str = "I don't know."

    def validate(self) -> None:
        super().validate()
        require(bool(self.good_answer.strip()), "good_answer", self.good_answer, "non-empty")


@register_method("flat", FLATConfig)
class FLAT(GradientAscent):
    """loss = -mean(g(good)) + mean(exp(g(bad) - 1)): the variational form of KL, with the
    template answer as the good response and the forget answer as the bad one.

    g is the per-sequence mean token probability, not the log-probability: a log-prob is
    unbounded below and exp(log p - 1) = p / e vanishes on long answers, while the mean
    probability stays in [0, 1] and keeps a useful gradient on both terms. No retain data
    is used.
    """

    config: FLATConfig

    @property
    def good_answer(self) -> str | None:
        return self.config.good_answer

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.good is None:
            raise ValueError(ERR_NO_GOOD)
        good = mean_token_prob(model, batch.good)
        bad = mean_token_prob(model, batch.forget)
        loss = -good.mean() + torch.exp(bad - 1).mean()
        logs = {"good_prob": float(good.detach().mean()), "bad_prob": float(bad.detach().mean())}
        return loss, logs
