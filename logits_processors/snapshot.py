"""Worker-side view of the registry: compiled targets loaded by (id, version), once each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from logits_processors.automaton import TokenAutomaton
from logits_processors.compiled import CompiledTarget
from logits_processors.params import TargetRef
from logits_processors.reader import CompiledReader, open_reader

# Set by the server before the engine starts; the spawned worker inherits it.
SNAPSHOT_DB_ENV = "GUARD_SNAPSHOT_DB"
ERR_NO_DB = f"flagged request but no registry: set {SNAPSHOT_DB_ENV} to the guard's --db"
ERR_MISSING = "forget target {ref} is not compiled in the registry"


@dataclass(frozen=True)
class Plan:
    """What one combination of targets means for the sampler, merged once and then reused."""

    automaton: TokenAutomaton
    penalty_ids: np.ndarray  # unique token ids
    penalty_vals: np.ndarray  # strength already folded in
    refusal: tuple[int, ...]
    note: tuple[int, ...] = ()


def merge(targets: list[CompiledTarget]) -> Plan:
    sequences = [s for t in targets for s in t.sequences]
    penalty: dict[int, float] = {}
    for t in targets:
        for tok, val in zip(t.penalty_ids, t.penalty_vals, strict=True):
            penalty[tok] = penalty.get(tok, 0.0) + t.strength * val
    ids = np.fromiter(penalty.keys(), dtype=np.int64, count=len(penalty))
    vals = np.fromiter(penalty.values(), dtype=np.float32, count=len(penalty))
    return Plan(TokenAutomaton(sequences), ids, vals, targets[0].refusal, targets[0].note)


class Snapshot:
    """Reads compiled targets from the registry file; caches per exact version."""

    def __init__(self, db_path: str | None):
        self.db_path = db_path
        self._targets: dict[TargetRef, CompiledTarget] = {}
        self._plans: dict[tuple[TargetRef, ...], Plan] = {}

    @classmethod
    def from_env(cls) -> Snapshot:
        return cls(os.environ.get(SNAPSHOT_DB_ENV))

    @cached_property
    def store(self) -> CompiledReader:
        if not self.db_path:
            raise RuntimeError(ERR_NO_DB)
        return open_reader(self.db_path)

    def target(self, ref: TargetRef) -> CompiledTarget:
        found = self._targets.get(ref)
        if found is None:
            blob = self.store.get_compiled(ref.target_id, ref.version)
            if blob is None:
                raise KeyError(ERR_MISSING.format(ref=f"{ref.target_id}@{ref.version}"))
            found = self._targets[ref] = CompiledTarget.from_bytes(blob)
        return found

    def plan(self, refs: tuple[TargetRef, ...]) -> Plan:
        key = tuple(sorted(set(refs), key=lambda r: (r.target_id, r.version)))
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = merge([self.target(r) for r in key])
        return found
