"""The engine worker's answer watch, kept in step with the registry.

The registry's generation is read when requests join the batch (one indexed row); when it
has moved, the watch is rebuilt from the active targets' names before those requests take
their first step, so a target registered before a request arrived is watched in its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from logits_processors.reader import CompiledReader, open_reader
from logits_processors.vocab import VocabIndex, token_bytes
from logits_processors.watch import TRIP_NOTE, Watch, WatchRow, watch_patterns
from logits_processors.watch_automaton import FoldedAutomaton

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = logging.getLogger(__name__)


class Watcher:
    """Holds the current `Watch` (None while no target is registered) and every row's state."""

    def __init__(
        self,
        reader: CompiledReader | None,
        vocabulary: Callable[[], tuple[VocabIndex, tuple[int, ...]]],
    ):
        self.reader = reader
        self._vocabulary = vocabulary
        self._vocab: tuple[VocabIndex, tuple[int, ...]] | None = None
        self.watch: Watch | None = None
        self.generation = -1

    @classmethod
    def from_config(cls, vllm_config: VllmConfig | None, db: str | None) -> Watcher:
        reader = open_reader(db) if db else None
        return cls(reader, lambda: vocabulary_of(vllm_config))

    def refresh(self, rows: dict[int, WatchRow]) -> None:
        """Catch up with the registry; every row is re-read when the watch changes."""
        if self.reader is None:
            return
        try:
            generation = self.reader.generation()
            if generation == self.generation:
                return
            watched = self.reader.watched()
        except Exception:
            # A registry that cannot be read keeps the last watch: the engine must not
            # crash, and what was watched stays watched.
            logger.exception("cannot read the registry; the answer watch stays as it was")
            return
        patterns = [
            pattern
            for target in watched
            for pattern in watch_patterns(list(target.phrases), target.policy == "refuse")
        ]
        self.generation = generation
        if not patterns:
            self.watch = None
            return
        if self._vocab is None:
            self._vocab = self._vocabulary()
        vocab, note = self._vocab
        self.watch = Watch(FoldedAutomaton(patterns), vocab, note, generation)
        for row in rows.values():
            self.watch.reread(row)


def vocabulary_of(vllm_config: VllmConfig | None) -> tuple[VocabIndex, tuple[int, ...]]:
    """The served model's vocabulary as the watch reads it, and the trip note's tokens."""
    from transformers import AutoTokenizer

    model = vllm_config.model_config
    tokenizer: Any = AutoTokenizer.from_pretrained(
        model.tokenizer, trust_remote_code=model.trust_remote_code
    )
    note = tuple(tokenizer.encode(TRIP_NOTE, add_special_tokens=False))
    return VocabIndex(token_bytes(tokenizer)), (*note, tokenizer.eos_token_id)
