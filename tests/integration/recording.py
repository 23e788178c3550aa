"""The forget processor, recording for each apply() whether it left unflagged rows alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from logits_processors.forget import ForgetLogitsProcessor


@dataclass(frozen=True)
class Step:
    rows: int
    flagged: int
    unflagged_identical: bool  # every unflagged row's logits, bit for bit
    flagged_changed: bool


class RecordingProcessor(ForgetLogitsProcessor):
    """Built by the engine in this process (the tier runs the engine core in-process)."""

    steps: ClassVar[list[Step]] = []

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        before = logits.clone()
        flagged = sorted(self.states)
        out = super().apply(logits)
        keep = [i for i in range(before.shape[0]) if i not in self.states]
        RecordingProcessor.steps.append(
            Step(
                rows=before.shape[0],
                flagged=len(flagged),
                unflagged_identical=torch.equal(out[keep], before[keep]),
                flagged_changed=bool(flagged) and not torch.equal(out[flagged], before[flagged]),
            )
        )
        return out
