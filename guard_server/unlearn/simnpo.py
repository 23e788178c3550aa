"""SimNPO (Fan et al. 2024): NPO without a reference model, length-normalised, with a margin."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard_server.unlearn.base import register_method, require
from guard_server.unlearn.losses import mean_nll, sequence_logprob
from guard_server.unlearn.npo import NPO, NPOConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Tokens


@dataclass(frozen=True)
class SimNPOConfig(NPOConfig):
    beta: float = 2.5
    gamma: float = 0.0

    def validate(self) -> None:
        super().validate()
        require(math.isfinite(self.gamma), "gamma", self.gamma, "a finite number")


@register_method("simnpo", SimNPOConfig)
class SimNPO(NPO):
    """NPO's loss with preference = log pi / |y| + gamma / beta, so that the loss reads
    -(2/beta) * logsigmoid(-(beta/|y|) * log pi - gamma): no reference forward pass."""

    config: SimNPOConfig

    def preference(self, model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        logp, counts = sequence_logprob(model, tokens)
        normalised = logp / counts.clamp_min(1)
        return normalised + self.config.gamma / self.config.beta, mean_nll(logp, counts)
