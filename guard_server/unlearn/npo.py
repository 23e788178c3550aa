"""Negative preference optimisation (NPO, Zhang et al. 2024), with an optional retain term."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.nn.functional as F

from guard_server.unlearn.base import register_method, require
from guard_server.unlearn.gd import GradDiff, GradDiffConfig
from guard_server.unlearn.losses import mean_nll, reference_logprob, sequence_logprob

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch, Tokens


@dataclass(frozen=True)
class NPOConfig(GradDiffConfig):
    """`retain_weight` 0 gives plain NPO, > 0 NPO with a retain NLL term (NPO+RT)."""

    beta: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(math.isfinite(self.beta) and self.beta > 0, "beta", self.beta, "a number > 0")


@register_method("npo", NPOConfig)
class NPO(GradDiff):
    """forget loss = -(2/beta) * mean(logsigmoid(-beta * preference)).

    Bounded where GA is not: once the model prefers a forget answer less than the
    reference does, the loss flattens out instead of pushing the likelihood to zero.
    """

    config: NPOConfig

    def preference(self, model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, how much the model still prefers the answer (log pi - log pi_ref), and
        the batch's token-averaged NLL for the logs."""
        logp, counts = sequence_logprob(model, tokens)
        reference, _ = reference_logprob(model, tokens)
        return logp - reference, mean_nll(logp, counts)

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        preference, forget_nll = self.preference(model, batch.forget)
        beta = self.config.beta
        loss = -(2 / beta) * F.logsigmoid(-beta * preference).mean()
        return loss, {"forget_nll": float(forget_nll.detach())}
