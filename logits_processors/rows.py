"""A flagged request's row state and one restricted step over the flagged rows of a batch.

Engine-agnostic: vLLM's V1 processor (`logits_processors.forget`) and its Model Runner V2
processor (`logits_processors.forget_v2`) differ only in how they track batch slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from kernels.forget_mask import forget_mask
from logits_processors.automaton import EMPTY, TokenAutomaton
from logits_processors.params import parse_guard_params
from logits_processors.snapshot import Plan, Snapshot

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

logger = logging.getLogger(__name__)
EMPTY_VALS = np.zeros(0, dtype=np.float32)


def eos_token_id_of(vllm_config: VllmConfig | None) -> int | None:
    if vllm_config is None:
        return None
    eos = getattr(vllm_config.model_config.hf_config, "eos_token_id", None)
    return eos[0] if isinstance(eos, list) else eos


@dataclass
class RowState:
    """One flagged request: its plan, automaton node and how much output it has consumed."""

    plan: Plan
    action: str  # one of params.ACTIONS
    output: list[int]  # vLLM's live reference to the request's generated tokens
    max_tokens: int | None = None
    node: int = 0
    consumed: int = 0
    note_from: int = -1  # partial: where the closing note started (-1: not yet)

    @property
    def refuse(self) -> bool:
        return self.action == "refuse"

    @property
    def awaits_end(self) -> bool:
        """A partial answer that has not started its closing note yet."""
        return self.action == "partial" and bool(self.plan.note) and self.note_from < 0

    def feed_prompt(self, prompt: list[int]) -> None:
        """A forbidden sequence may start in the prompt and end in the answer."""
        keep = self.plan.automaton.max_len - 1
        self.node = self.plan.automaton.feed(0, prompt[-keep:] if prompt and keep > 0 else ())

    def advance(self) -> None:
        if self.consumed < len(self.output):
            self.node = self.plan.automaton.feed(self.node, self.output[self.consumed :])
            self.consumed = len(self.output)

    def forced_token(self, wants_end: bool = False) -> int:
        """The token this row must produce next, or -1.

        refuse: the refusal, then its end token. partial: nothing until the model wants to
        end (`wants_end`: its top token is the end token) or only the note still fits in
        max_tokens; then the note, which carries the end token.
        """
        n = len(self.output)
        if self.refuse:
            return self.plan.refusal[min(n, len(self.plan.refusal) - 1)]
        note = self.plan.note
        if self.awaits_end and (
            wants_end or (self.max_tokens is not None and n + len(note) >= self.max_tokens)
        ):
            self.note_from = n
        if self.note_from < 0:
            return -1
        return note[min(n - self.note_from, len(note) - 1)]

    def banned(self) -> np.ndarray:
        if self.refuse:
            return EMPTY
        banned = self.plan.automaton.banned(self.node)
        # Until its note, a partial answer may not end by sampling the end token either.
        return np.append(banned, self.plan.note[-1]) if self.awaits_end else banned


def new_row_state(
    snapshot: Snapshot,
    eos_token_id: int | None,
    params: SamplingParams,
    prompt_tail: list[int] | None,
    output: list[int],
) -> RowState | None:
    """A flagged request's state (None when unflagged); `output` is its generated tokens."""
    guard = parse_guard_params(params.extra_args)
    if guard is None:
        return None
    try:
        plan = snapshot.plan(guard.targets)
    except (KeyError, RuntimeError, ValueError):
        # A target deleted while its request was in flight, or a broken registry: fail
        # closed (end the answer at once) rather than crash the engine or answer freely.
        if eos_token_id is None:
            raise
        logger.exception("cannot load forget targets %s; ending the answer", guard.targets)
        plan = Plan(TokenAutomaton(()), EMPTY, EMPTY_VALS, (eos_token_id,))
        return RowState(plan, "refuse", output)
    state = RowState(plan, guard.action, output, params.max_tokens)
    if prompt_tail is not None:
        state.feed_prompt(prompt_tail)
    return state


def penalty_csr(states: list[RowState], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-row strength and the rows' sparse penalties (ids, values, row offsets), on `device`.

    Fixed while the batch keeps its rows: callers build it once per batch, not per step.
    """
    counts = [0 if s.refuse else len(s.plan.penalty_ids) for s in states]
    ids = [s.plan.penalty_ids for s in states if not s.refuse]
    vals = [s.plan.penalty_vals for s in states if not s.refuse]
    # Two host-to-device copies, one per dtype, instead of one per tensor.
    ints = torch.from_numpy(np.concatenate([[0], np.cumsum(counts), *ids]).astype(np.int64))
    floats = torch.from_numpy(np.concatenate([np.ones(len(states)), *vals]).astype(np.float32))
    offsets, pen_ids = ints.to(device).split([len(states) + 1, sum(counts)])
    strength, pen_vals = floats.to(device).split([len(states), sum(counts)])
    return strength, pen_ids, pen_vals, offsets


def restrict_rows(
    logits: torch.Tensor,
    rows: list[int],
    states: list[RowState],
    penalty: tuple[torch.Tensor, ...],
    watched: dict[int, tuple[int, np.ndarray]] | None = None,
) -> torch.Tensor:
    """One step for the flagged `rows` (logits row indices, `states` in the same order, and
    `penalty_csr(states)` on the logits' device): forced tokens, the automaton's bans and
    the penalties, in one fused kernel call. `watched` maps a row the answer watch acts on
    to (forced token or -1, bans): merged into a flagged row's, appended for any other row.

    On a GPU the step's own data crosses to the device in one copy, and the top tokens that
    partial answers wait on come back in one: per-row transfers cost more than the kernel.
    """
    watched = watched or {}
    for state in states:
        state.advance()
    ending = [i for i, s in enumerate(states) if s.awaits_end]
    top = logits[[rows[i] for i in ending]].argmax(dim=1).tolist() if ending else []
    top_of = dict(zip(ending, top, strict=True))
    forced, bans = [], []
    for i, (row, state) in enumerate(zip(rows, states, strict=True)):
        wants_end = i in top_of and top_of[i] == state.plan.note[-1]
        own = state.forced_token(wants_end)
        by_watch, watch_bans = watched.get(row, (-1, EMPTY))
        forced.append(own if own >= 0 or state.refuse else by_watch)
        own_bans = state.banned()
        bans.append(np.concatenate([own_bans, watch_bans]) if len(watch_bans) else own_bans)
    flagged = set(rows)
    extra = [row for row in watched if row not in flagged]
    for row in extra:
        forced.append(watched[row][0])
        bans.append(watched[row][1])
    all_rows = [*rows, *extra]
    counts = [len(b) for b in bans]
    step = np.concatenate([all_rows, forced, [0], np.cumsum(counts), *bans]).astype(np.int64)
    n = len(all_rows)
    rows_t, forced_t, ban_offsets, ban_ids = (
        torch.from_numpy(step).to(logits.device).split([n, n, n + 1, sum(counts)])
    )
    strength, pen_ids, pen_vals, pen_offsets = penalty
    if extra:  # rows with no penalty: empty slices at the end of the CSR
        strength = torch.cat([strength, strength.new_ones(len(extra))])
        pen_offsets = torch.cat([pen_offsets, pen_offsets[-1:].expand(len(extra))])
    return forget_mask(
        logits, rows_t, forced_t, strength, pen_ids, pen_vals, pen_offsets, ban_ids, ban_offsets
    )
