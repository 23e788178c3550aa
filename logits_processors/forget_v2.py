"""The forget processor for vLLM's Model Runner V2 (the CUDA default), sharing the V1 one's
plans, automaton, row states and fused kernel (`logits_processors.rows`).

MRV2 keys state by request slot and reorders rows every step; the generated tokens are read
from the runner's token history (`req_states.all_token_ids` up to `total_len`) for the slots
the guard follows: every slot while any target is registered (the answer watch), none
otherwise, so a server with no target costs nothing and touches nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

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
from logits_processors.watch import PROMPT_TAIL_TOKENS, WatchRow
from logits_processors.watcher import Watcher

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
        watch_server()
        self.snapshot = Snapshot.from_env()
        self.watcher = Watcher.from_config(vllm_config, self.snapshot.db_path)
        self.eos_token_id = eos_token_id_of(vllm_config)
        self.states: dict[int, RowState] = {}  # slot -> state of a flagged request
        self.rows: dict[int, WatchRow] = {}  # slot -> the answer watch's row
        self._unread: set[int] = set()  # slots whose prompt tail has not been read
        self._penalty_key: tuple[int, ...] | None = None
        self._penalty: tuple[torch.Tensor, ...] = ()

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        self.watcher.refresh(self.rows)
        output: list[int] = []  # one list per slot: the plan's and the watch's reader share it
        state = new_row_state(self.snapshot, self.eos_token_id, sampling_params, None, output)
        self._penalty_key = None  # a slot may now hold another request
        self.states.pop(req_idx, None)
        self.rows.pop(req_idx, None)
        self._unread.discard(req_idx)
        if state is None and (self.watcher.watch is None or unwatched(sampling_params.extra_args)):
            return False
        if state is not None:
            self.states[req_idx] = state
        self.rows[req_idx] = WatchRow(output, bias=sampling_params.logit_bias or None)
        self._unread.add(req_idx)
        return True

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots = ctx.idx_mapping_np.tolist()
        if logits.shape[0] != len(slots):  # speculative decoding: one row per draft token
            slots = ctx.expanded_idx_mapping.tolist()
        present = [(row, slot) for row, slot in enumerate(slots) if slot in self.rows]
        if not present:
            return logits
        self._catch_up(sorted({slot for _, slot in present}))
        watch = self.watcher.watch
        watched = {}
        if watch is not None:
            refused = {row for row, slot in present if self._refused(slot)}
            watched = watch.act(logits, {row: self.rows[slot] for row, slot in present}, refused)
        flagged = [(row, slot) for row, slot in present if slot in self.states]
        if not flagged and not watched:
            return logits
        states = [self.states[slot] for _, slot in flagged]
        key = tuple(slot for _, slot in flagged)  # MRV2 reorders rows: the CSR follows them
        if key != self._penalty_key:
            self._penalty_key, self._penalty = key, penalty_csr(states, self.device)
        rows = [row for row, _ in flagged]
        return restrict_rows(logits, rows, states, self._penalty, watched)

    def _refused(self, slot: int) -> bool:
        state = self.states.get(slot)
        return state is not None and state.refuse

    def _catch_up(self, slots: list[int]) -> None:
        """Feed each slot's new committed tokens (and, once, its prompt's tail). A step adds
        one token to most slots: those are read in one gather, the rest one by one."""
        history = self.req_states.all_token_ids.gpu
        totals = self.req_states.total_len.gpu[slots].tolist()
        prompt_lens = self.req_states.prompt_len.np
        single, singles = [], []
        for slot, total in zip(slots, totals, strict=True):
            row, start = self.rows[slot], int(prompt_lens[slot])
            if slot in self._unread:
                row.prompt = history[slot, :start]  # a view: the watch reads what it needs
                if slot in self.states:
                    tail = history[slot, max(start - PROMPT_TAIL_TOKENS, 0) : start].tolist()
                    self.states[slot].feed_prompt(tail)
                if self.watcher.watch is not None:
                    self.watcher.watch.reread(row)
                self._unread.discard(slot)
            seen = start + len(row.output)
            if total == seen + 1:
                single.append(slot)
                singles.append(seen)
            elif total > seen:
                row.output.extend(history[slot, seen:total].tolist())
        if single:
            tokens = history[single, singles].tolist()
            for slot, token in zip(single, tokens, strict=True):
                self.rows[slot].output.append(token)
