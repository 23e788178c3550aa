"""Gradient difference (GD): gradient ascent on forget plus ordinary NLL on retain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard_server.unlearn.base import UnlearnConfig, register_method, require
from guard_server.unlearn.ga import GradientAscent
from guard_server.unlearn.losses import nll, reference_kl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch


RETAIN_LOSSES = {"nll": nll, "kl": reference_kl}


@dataclass(frozen=True)
class GradDiffConfig(UnlearnConfig):
    """`retain_loss`: "nll" fits the retain answers; "kl" keeps the base model's next-token
    distributions on the retain rows (open-unlearning's `retain_loss_type: KL`)."""

    retain_weight: float = 1.0
    retain_loss: str = "nll"

    def validate(self) -> None:
        super().validate()
        ok = math.isfinite(self.retain_weight) and self.retain_weight >= 0
        require(ok, "retain_weight", self.retain_weight, "a finite number >= 0")
        require(self.retain_loss in RETAIN_LOSSES, "retain_loss", self.retain_loss, "nll or kl")


@register_method("gd", GradDiffConfig)
class GradDiff(GradientAscent):
    """forget_loss + retain_weight * retain loss; subclasses change only `forget_loss`."""

    config: GradDiffConfig

    def retain_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor | None, dict]:
        """retain_weight * the retain loss, or None when the weight is 0."""
        if self.config.retain_weight == 0:
            return None, {}
        kind = self.config.retain_loss
        retain = RETAIN_LOSSES[kind](model, batch.retain)
        return self.config.retain_weight * retain, {f"retain_{kind}": float(retain.detach())}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        forget, logs = self.forget_loss(model, batch)
        retain, more = self.retain_loss(model, batch)
        return (forget if retain is None else forget + retain), {**logs, **more}

    def step(
        self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """`loss`'s gradient, one term at a time: each term's backward pass frees its graph
        before the next forward pass, so the forget and retain activations are never held
        together (they are most of a step's memory)."""
        optimizer.zero_grad(set_to_none=True)
        forget, logs = self.forget_loss(model, batch)
        forget.backward()
        total = float(forget.detach())
        retain, more = self.retain_loss(model, batch)
        if retain is not None:
            retain.backward()
            total += float(retain.detach())
        optimizer.step()
        return {"loss": total, **logs, **more}
