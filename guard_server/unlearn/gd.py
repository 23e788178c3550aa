"""Gradient difference (GD): gradient ascent on forget plus ordinary NLL on retain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard_server.unlearn.base import UnlearnConfig, register_method, require
from guard_server.unlearn.ga import GradientAscent
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch


@dataclass(frozen=True)
class GradDiffConfig(UnlearnConfig):
    retain_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        ok = math.isfinite(self.retain_weight) and self.retain_weight >= 0
        require(ok, "retain_weight", self.retain_weight, "a finite number >= 0")


@register_method("gd", GradDiffConfig)
class GradDiff(GradientAscent):
    """forget_loss + retain_weight * NLL(retain); subclasses change only `forget_loss`."""

    config: GradDiffConfig

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        forget, logs = self.forget_loss(model, batch)
        if self.config.retain_weight == 0:
            return forget, logs
        retain = nll(model, batch.retain)
        total = forget + self.config.retain_weight * retain
        return total, {**logs, "retain_nll": float(retain.detach())}
