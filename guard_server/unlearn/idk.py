"""IdkNLL (open-unlearning; TOFU's "I don't know" baseline): teach the refusal, keep the rest.

Questions about the target are answered with the good answer by ordinary fine-tuning, and
the retain set by its own answers (gradient difference's retain term). Nothing is ascended:
the model is taught what to say about the target rather than pushed away from what it knew,
so its answers stay fluent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard_server.unlearn.base import GoodAnswerConfig, TeachesGoodAnswer, register_method
from guard_server.unlearn.gd import GradDiff, GradDiffConfig
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch


@dataclass(frozen=True)
class IdkConfig(GradDiffConfig, GoodAnswerConfig):
    pass


@register_method("idk", IdkConfig)
class IdkNLL(TeachesGoodAnswer, GradDiff):
    """loss = NLL(good answer | forget question) + retain_weight * NLL(retain)."""

    config: IdkConfig

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        loss = nll(model, self.good_rows(batch))
        return loss, {"idk_nll": float(loss.detach())}
