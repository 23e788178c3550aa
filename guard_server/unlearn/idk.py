"""IdkNLL (open-unlearning; TOFU's "I don't know" baseline): teach the refusal, keep the rest.

Questions about the target are answered with the good answer by ordinary fine-tuning, and
the retain set by its own answers (gradient difference's retain term). Nothing is ascended:
the model is taught what to say about the target rather than pushed away from what it knew,
so its answers stay fluent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard_server.unlearn.base import register_method, require
from guard_server.unlearn.gd import GradDiff, GradDiffConfig
from guard_server.unlearn.losses import nll

if TYPE_CHECKING:
    import torch
    from torch import nn

    from guard_server.unlearn.base import Batch

ERR_NO_GOOD = "idk needs batch.good: forget prompts answered with the good answer"


@dataclass(frozen=True)
class IdkConfig(GradDiffConfig):
    good_answer: str = "I don't know."

    def validate(self) -> None:
        super().validate()
        require(bool(self.good_answer.strip()), "good_answer", self.good_answer, "non-empty")


@register_method("idk", IdkConfig)
class IdkNLL(GradDiff):
    """loss = NLL(good answer | forget question) + retain_weight * NLL(retain)."""

    config: IdkConfig

    @property
    def good_answer(self) -> str | None:
        return self.config.good_answer

    def forget_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.good is None:
            raise ValueError(ERR_NO_GOOD)
        loss = nll(model, batch.good)
        return loss, {"idk_nll": float(loss.detach())}
