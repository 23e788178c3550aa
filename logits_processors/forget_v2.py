"""The forget processor for vLLM's Model Runner V2 (the CUDA default), sharing the V1 one's
plans, automaton, row states and fused kernel (`logits_processors.rows`).

MRV2 keys state by request slot and reorders rows every step; the generated tokens are read
from the runner's token history (`req_states.all_token_ids` up to `total_len`) for flagged
slots only, so a step with no flagged row costs nothing and touches nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

from logits_processors.params import parse_guard_params
from logits_processors.rows import (
    RowState,
    eos_token_id_of,
    new_row_state,
    penalty_csr,
    restrict_rows,
)
from logits_processors.snapshot import Snapshot

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig
    from vllm.v1.worker.gpu.sample.logits_processor import (
        LogitsContext,
        LogitsProcRequestState,
    )


class ForgetLogitsProcessorV2(LogitsProcessor):
    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        parse_guard_params(sampling_params.extra_args)

    def __init__(self, vllm_config: VllmConfig | None, req_states: LogitsProcRequestState):
        self.req_states = req_states
        self.device = torch.device(req_states.device)
        self.snapshot = Snapshot.from_env()
        self.eos_token_id = eos_token_id_of(vllm_config)
        self.states: dict[int, RowState] = {}  # slot -> state of a flagged request
        self._unread: set[int] = set()  # slots whose prompt tail the automaton has not seen
        self._penalty_key: tuple[int, ...] = ()
        self._penalty: tuple[torch.Tensor, ...] = ()

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        state = new_row_state(self.snapshot, self.eos_token_id, sampling_params, None, [])
        self._penalty_key = ()  # a slot may now hold another request
        if state is None:
            self.states.pop(req_idx, None)
            self._unread.discard(req_idx)
            return False
        self.states[req_idx] = state
        self._unread.add(req_idx)
        return True

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots = ctx.idx_mapping_np.tolist()
        if logits.shape[0] != len(slots):  # speculative decoding: one row per draft token
            slots = ctx.expanded_idx_mapping.tolist()
        flagged = [(row, slot) for row, slot in enumerate(slots) if slot in self.states]
        if not flagged:
            return logits
        self._catch_up([slot for _, slot in flagged])
        states = [self.states[slot] for _, slot in flagged]
        key = tuple(slot for _, slot in flagged)  # MRV2 reorders rows: the CSR follows them
        if key != self._penalty_key:
            self._penalty_key, self._penalty = key, penalty_csr(states, self.device)
        return restrict_rows(logits, [row for row, _ in flagged], states, self._penalty)

    def _catch_up(self, slots: list[int]) -> None:
        """Feed each flagged slot's new committed tokens (and, once, its prompt's tail)."""
        history = self.req_states.all_token_ids.gpu
        totals = self.req_states.total_len.gpu[slots].tolist()
        prompt_lens = self.req_states.prompt_len.np
        for slot, total in zip(slots, totals, strict=True):
            state, start = self.states[slot], int(prompt_lens[slot])
            if slot in self._unread:
                tail = max(start - state.plan.automaton.max_len + 1, 0)
                state.feed_prompt(history[slot, tail:start].tolist())
                self._unread.discard(slot)
            seen = start + len(state.output)
            if total > seen:
                state.output.extend(history[slot, seen:total].tolist())
