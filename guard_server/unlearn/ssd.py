"""Selective synaptic dampening (SSD, Foster et al., AAAI 2024): training-free unlearning.

Each weight's importance to a set is the mean squared gradient of its loss (the Fisher
diagonal). Weights far more important to the forget set than to the retain set are dampened:

    w <- w * min(lambda * I_retain / I_forget, 1)   where I_forget > alpha * I_retain

No optimizer runs. The edit is made on the LoRA-wrapped linear layers' base weights and served
as a LoRA adapter: each layer's change is factored by SVD and its top `lora_rank` directions
become the adapter (the share of the change they carry is logged as `kept_energy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guard_server.unlearn.base import UnlearnConfig, UnlearningMethod, register_method, require
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch, Tokens
    from guard_server.unlearn.data import UnlearnData


@dataclass(frozen=True)
class SSDConfig(UnlearnConfig):
    """`steps` is the number of batches the importances are averaged over; `alpha` and
    `dampening` (lambda) are the paper's selection and dampening constants."""

    steps: int = 8
    alpha: float = 10.0
    dampening: float = 1.0

    def validate(self) -> None:
        super().validate()
        for name in ("alpha", "dampening"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value, "a finite number > 0")


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The LoRA-wrapped linear layers of a PEFT model, by name."""
    from peft.tuners.lora import Linear

    return {name: m for name, m in model.named_modules() if isinstance(m, Linear)}


@register_method("ssd", SSDConfig)
class SelectiveSynapticDampening(UnlearningMethod):
    """Training-free: `edit` replaces the optimizer loop (see `training_free`)."""

    config: SSDConfig
    training_free = True

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError("SSD is training-free: the trainer calls `edit`")

    def importances(
        self, model: nn.Module, weights: dict[str, torch.Tensor], batches: list[Tokens]
    ) -> dict[str, torch.Tensor]:
        """Mean squared gradient of the NLL on `batches`, per weight, adapter switched off."""
        total = {name: torch.zeros_like(w) for name, w in weights.items()}
        with model.disable_adapter():
            for tokens in batches:
                model.zero_grad(set_to_none=True)
                nll(model, tokens).backward()
                for name, w in weights.items():
                    total[name] += w.grad.square()
        for w in weights.values():
            w.grad = None
        return {name: t / len(batches) for name, t in total.items()}

    def edit(self, model: nn.Module, data: UnlearnData) -> dict[str, float]:
        """Dampen the forget-specific weights and write the change into the LoRA factors."""
        cfg = self.config
        layers = lora_layers(model)
        weights = {name: layer.base_layer.weight for name, layer in layers.items()}
        for w in weights.values():
            w.requires_grad_(True)
        try:
            drawn = [data.step_batch(cfg) for _ in range(cfg.steps)]
            forget = self.importances(model, weights, [b.forget for b in drawn])
            retain = self.importances(model, weights, [b.retain for b in drawn])
        finally:
            for w in weights.values():
                w.requires_grad_(False)
        selected = changed = kept = 0.0
        with torch.no_grad():
            for name, layer in layers.items():
                w, f, r = weights[name], forget[name], retain[name]
                chosen = f > cfg.alpha * r
                beta = (cfg.dampening * r / f.clamp_min(1e-30)).clamp(max=1.0)
                delta = torch.where(chosen, w * (beta - 1), torch.zeros_like(w))
                kept += _into_lora(layer, delta)
                changed += float(delta.square().sum())
                selected += float(chosen.sum())
        total = sum(w.numel() for w in weights.values())
        return {
            "loss": 0.0,
            "selected_share": selected / total,
            "change_norm": math.sqrt(changed),
            "kept_energy": kept / changed if changed else 1.0,
        }


def _into_lora(layer: nn.Module, delta: torch.Tensor) -> float:
    """Set `layer`'s LoRA factors to the best rank-r approximation of `delta` (its scaling
    divided out); the squared norm that approximation keeps."""
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(a.shape[0], s.numel())
    root = s[:k].sqrt()
    a.zero_()
    b.zero_()
    a[:k] = root[:, None] * vh[:k]
    b[:, :k] = u[:, :k] * root[None, :] / layer.scaling["default"]
    return float(s[:k].square().sum())
