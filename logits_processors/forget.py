"""The forget logits processor (vLLM V1 interface): restricts flagged rows, leaves others alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from logits_processors.params import GuardParams, parse_guard_params

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig


class ForgetLogitsProcessor(LogitsProcessor):
    """Rows are batch slots, not requests: `update_state` keeps the slot -> request map."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        parse_guard_params(sampling_params.extra_args)

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.rows: dict[int, GuardParams] = {}

    def is_argmax_invariant(self) -> bool:
        # Bans and penalties change the argmax: greedy requests must pass through apply().
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(
            self.rows,
            batch_update,
            lambda params, _prompt, _out: parse_guard_params(params.extra_args),
        )

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        # Unflagged batches return the very tensor they got: bit-identical by construction.
        return logits
