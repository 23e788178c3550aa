"""Representation misdirection (RMU, Li et al. 2024, WMDP): scramble forget activations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guard_server.unlearn.base import (
    ERR_FIELD,
    UnlearnConfig,
    UnlearningMethod,
    register_method,
    require,
)

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch, Tokens


@dataclass(frozen=True)
class RMUConfig(UnlearnConfig):
    """`layer` is the decoder layer whose output is steered (None: the middle one); the
    defaults for `steering_coeff` and `alpha` are the WMDP reference implementation's."""

    layer: int | None = None
    steering_coeff: float = 20.0
    alpha: float = 100.0

    def validate(self) -> None:
        super().validate()
        if self.layer is not None:
            require(self.layer >= 0, "layer", self.layer, "an integer >= 0 or None")
        for name in ("steering_coeff", "alpha"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, value, "a finite number >= 0")


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per hidden unit, averaged over the unpadded positions only."""
    per_token = (a - b).square().mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


@register_method("rmu", RMUConfig)
class RMU(UnlearningMethod):
    """MSE(h_forget, c*u) + alpha * MSE(h_retain, h_retain of the frozen model).

    u is a random unit vector fixed by the seed; the frozen activations come from the
    same model with its adapter disabled.
    """

    config: RMUConfig

    def __init__(self, config: RMUConfig | None = None):
        super().__init__(config)
        self._control: torch.Tensor | None = None

    def layer_index(self, model: nn.Module) -> int:
        layers = model.config.num_hidden_layers
        layer = layers // 2 if self.config.layer is None else self.config.layer
        if layer >= layers:
            rule = f"< num_hidden_layers ({layers})"
            raise ValueError(ERR_FIELD.format(field="layer", rule=rule, value=layer))
        return layer

    def activations(self, model: nn.Module, tokens: Tokens) -> torch.Tensor:
        # hidden_states[0] is the embedding output, so decoder layer i is at index i + 1;
        # logits_to_keep=1 spares the (rows, length, vocab) logits nobody reads.
        out = model(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        return out.hidden_states[self.layer_index(model) + 1]

    def control(self, hidden: torch.Tensor) -> torch.Tensor:
        """c * u, drawn once from the seed (uniform [0, 1) then normalised, as in WMDP)."""
        if self._control is None or self._control.shape[-1] != hidden.shape[-1]:
            generator = torch.Generator().manual_seed(self.config.seed)
            u = torch.rand(hidden.shape[-1], generator=generator)
            self._control = self.config.steering_coeff * u / u.norm()
        return self._control.to(hidden)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        forget = self.activations(model, batch.forget)
        forget_mse = masked_mse(forget, self.control(forget), batch.forget.attention_mask)
        retain = self.activations(model, batch.retain)
        with torch.no_grad(), model.disable_adapter():
            frozen = self.activations(model, batch.retain)
        retain_mse = masked_mse(retain, frozen, batch.retain.attention_mask)
        loss = forget_mse + self.config.alpha * retain_mse
        logs = {"forget_mse": float(forget_mse.detach()), "retain_mse": float(retain_mse.detach())}
        return loss, logs
