"""The forget logits processor (vLLM V1 interface): restricts flagged rows, leaves others alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from logits_processors.lifeline import watch_server
from logits_processors.params import parse_guard_params, unwatched
from logits_processors.rows import (
    RowState,
    eos_token_id_of,
    new_row_state,
    penalty_csr,
    restrict_rows,
)
from logits_processors.snapshot import Snapshot
from logits_processors.watch import WatchRow
from logits_processors.watcher import Watcher

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig


class ForgetLogitsProcessor(LogitsProcessor):
    """Rows are batch slots, not requests: `update_state` keeps the slot -> state maps, one
    for flagged requests (their targets' plan) and one for every request (the answer watch).

    The penalty CSR is rebuilt (and moved to the device) only when the batch changes; per
    step only the forced tokens and the bans are gathered.
    """

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        parse_guard_params(sampling_params.extra_args)

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.device = torch.device(device)
        watch_server()
        self.snapshot = Snapshot.from_env()
        self.watcher = Watcher.from_config(vllm_config, self.snapshot.db_path)
        self.eos_token_id = eos_token_id_of(vllm_config)
        self.states: dict[int, RowState] = {}
        self.rows: dict[int, WatchRow] = {}
        self._csr: tuple[torch.Tensor, ...] | None = None

    def is_argmax_invariant(self) -> bool:
        # Bans and penalties change the argmax: greedy requests must pass through apply().
        return False

    def _new_state(
        self, params: SamplingParams, prompt: list[int] | None, output: list[int]
    ) -> RowState | None:
        return new_row_state(self.snapshot, self.eos_token_id, params, prompt, output)

    def _new_row(self, params: SamplingParams, prompt: list[int] | None, output: list[int]):
        if unwatched(params.extra_args):
            return None
        row = WatchRow(output, prompt or (), bias=params.logit_bias or None)
        if self.watcher.watch is not None:
            self.watcher.watch.reread(row)
        return row

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is not None and batch_update.added:
            self.watcher.refresh(self.rows)  # before the new rows are read
        process_dict_updates(self.rows, batch_update, self._new_row)
        if process_dict_updates(self.states, batch_update, self._new_state):
            self._csr = None

    def _penalty(self) -> tuple[torch.Tensor, ...]:
        if self._csr is None:
            self._order = sorted(self.states)
            self._csr = penalty_csr([self.states[i] for i in self._order], self.device)
        return self._csr

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        watch = self.watcher.watch
        refused = {i for i, s in self.states.items() if s.refuse}
        watched = watch.act(logits, self.rows, refused) if watch is not None else {}
        if not self.states and not watched:
            # A batch the guard does not act on returns the very tensor it got: bit-identical
            # by construction.
            return logits
        penalty = self._penalty()
        states = [self.states[i] for i in self._order]
        return restrict_rows(logits, self._order, states, penalty, watched)
