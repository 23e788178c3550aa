"""Gradient ascent (GA): raise the negative log-likelihood of the forget answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard_server.unlearn.base import UnlearnConfig, UnlearningMethod, register_method
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch


@register_method("ga", UnlearnConfig)
class GradientAscent(UnlearningMethod):
    """Minimises -NLL(forget). Unbounded below: run few steps or prefer NPO.

    `forget_loss` is the part the methods below replace; `loss` adds nothing to it here.
    """

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        value = nll(model, batch.forget)
        return -value, {"forget_nll": float(value.detach())}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.forget_loss(model, batch)
