"""Gradient-projected unlearning (GU): an inner forget loss whose gradient never fights retain."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from guard_server.unlearn.base import (
    UnlearnConfig,
    UnlearningMethod,
    get_method,
    method_names,
    register_method,
    require,
)
from guard_server.unlearn.ga import GradientAscent
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch


def forget_methods() -> list[str]:
    """Registered methods with a `forget_loss` GU can wrap (GA and what derives from it)."""
    return [n for n in method_names() if issubclass(get_method(n), GradientAscent)]


@dataclass(frozen=True)
class GUConfig(UnlearnConfig):
    """`inner` names the forget loss; it runs with its own defaults for its extra fields."""

    inner: str = "ga"
    retain_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        valid = forget_methods()
        require(self.inner in valid, "inner", self.inner, f"one of {valid}")
        ok = math.isfinite(self.retain_weight) and self.retain_weight >= 0
        require(ok, "retain_weight", self.retain_weight, "a finite number >= 0")


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """d loss / d params, flattened into one vector (zeros where a parameter is unused)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    pairs = zip(grads, params, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in pairs])


@register_method("gu", GUConfig)
class GradientProjection(UnlearningMethod):
    """Update = g_forget' + retain_weight * g_retain over the trainable (LoRA) parameters,
    where g_forget' is g_forget with its component along g_retain removed whenever the two
    conflict (negative dot product): a step then cannot raise the retain loss to first order.
    """

    config: GUConfig

    def __init__(self, config: GUConfig | None = None):
        super().__init__(config)
        inner_cls = get_method(self.config.inner)
        shared = {f.name: getattr(self.config, f.name) for f in fields(UnlearnConfig)}
        self.inner: GradientAscent = inner_cls(inner_cls.config_cls(**shared))

    @property
    def good_answer(self) -> str | None:
        return self.inner.good_answer

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The unprojected objective, for evaluation; training goes through `step`."""
        forget, logs = self.inner.forget_loss(model, batch)
        retain = nll(model, batch.retain)
        total = forget + self.config.retain_weight * retain
        return total, {**logs, "retain_nll": float(retain.detach())}

    def step(
        self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        forget, logs = self.inner.forget_loss(model, batch)
        g_forget = flat_grad(forget, params)
        retain = nll(model, batch.retain)
        g_retain = flat_grad(retain, params)
        dot = torch.dot(g_forget, g_retain)
        conflict = bool(dot < 0)
        if conflict:
            g_forget = g_forget - dot / g_retain.square().sum().clamp_min(1e-12) * g_retain
        update = g_forget + self.config.retain_weight * g_retain
        offset = 0
        for p in params:
            p.grad = update[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        optimizer.step()
        total = float(forget.detach()) + self.config.retain_weight * float(retain.detach())
        logs.update(retain_nll=float(retain.detach()), grad_dot=float(dot))
        return {"loss": total, **logs, "projected": float(conflict)}
