"""The engine worker's answer watch, kept in step with the registry.

The registry's generation is read when requests join the batch (one indexed row); when it
has moved, the watch is rebuilt from the active targets' names before those requests take
their first step, so a target registered before a request arrived is watched in its answer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logits_processors.reader import CompiledReader, open_reader
from logits_processors.surnames import Part, part_patterns
from logits_processors.vocab import VocabIndex, index_path, special_ids, token_bytes
from logits_processors.watch import TripNote, Watch, WatchRow, watch_patterns
from logits_processors.watch_automaton import FoldedAutomaton

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = logging.getLogger(__name__)
# The vocabulary file `guard-server serve` prepares for the engine's workers.
WATCH_VOCAB_ENV = "GUARD_WATCH_VOCAB"


def freeze_heap() -> None:
    """Collect, then freeze what the garbage collector tracks (as vLLM's engine core does at
    start, `vllm.utils.gc_utils.freeze_gc_heap`): a full collection walks only what came
    after. In an engine worker, whose heap vLLM leaves unfrozen, a full collection walked
    ~800,000 objects (the watch at 10,000 targets, its vocabulary and caches, torch's and
    vLLM's own) for ~0.5 s between decoding steps, several times a minute under load
    (measured with a `gc.callbacks` probe, 2-core x86 VM). Called after each rebuild of the
    watch; the first call pays one full collection. At exit the heap is thawed, so that the
    interpreter's last collection frees it (extension types count what it leaves as leaks).
    (A frozen heap is collected in full more often, each time over what came after; in the
    API server and the detection process, which answer requests between collections, one
    round of `guard-bench load` did not show it helping.)"""
    import atexit
    import gc

    gc.collect()
    gc.freeze()
    atexit.unregister(gc.unfreeze)
    atexit.register(gc.unfreeze)


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
        patterns, parts = names_of(watched)
        self.generation = generation
        if not patterns:
            self.watch = None
            return
        if self._vocab is None:
            self._vocab = self._vocabulary()
        vocab, note = self._vocab
        started = time.perf_counter()
        automaton = FoldedAutomaton(patterns, contextual=parts)
        self.watch = Watch(automaton, vocab, note, generation, parts)
        freeze_heap()
        logger.info(
            "answer watch: %d names of %d targets, built in %.2f s",
            len(patterns),
            len(watched),
            time.perf_counter() - started,
        )
        for row in rows.values():
            self.watch.reread(row)


def names_of(watched: list[Any]) -> tuple[list[tuple[str, bool]], dict[str, Part]]:
    """The watch's patterns for targets (each with `phrases` and `policy`): their names, and
    the parts of them that name them alone, read in context (`part_patterns`)."""
    patterns: list[tuple[str, bool]] = []
    alone: list[tuple[str, bool]] = []
    parts: dict[str, Part] = {}
    for target in watched:
        refuse = target.policy == "refuse"
        patterns += watch_patterns(list(target.phrases), refuse)
        for pattern, (policy, part) in part_patterns(list(target.phrases), refuse).items():
            alone.append((pattern, policy))
            parts.setdefault(pattern, part)
    named = {pattern for pattern, _ in patterns}  # a whole name ("Cher") is never a part
    parts = {p: part for p, part in parts.items() if p not in named}
    return patterns + [(p, policy) for p, policy in alone if p in parts], parts


def vocabulary_of(vllm_config: VllmConfig | None) -> tuple[VocabIndex, tuple[int, ...]]:
    """The served model's vocabulary as the watch reads it, and the trip note's tokens: as
    the server prepared them before starting the engine (`WATCH_VOCAB_ENV`), else built
    here from the tokenizer (an engine inside the caller's process)."""
    prepared = os.environ.get(WATCH_VOCAB_ENV)
    if prepared:
        return VocabIndex.load(Path(prepared))
    model = vllm_config.model_config
    return build_vocabulary(model.tokenizer, model.trust_remote_code)


def build_vocabulary(tokenizer_dir: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(
        tokenizer_dir, trust_remote_code=trust_remote_code
    )
    return VocabIndex(token_bytes(tokenizer), special_ids(tokenizer)), TripNote.of(tokenizer).ids


def prepare_vocabulary(tokenizer_dir: str, cache: Path, trust_remote_code: bool = False) -> Path:
    """Build (once per vocabulary) the file the engine's workers load the watch's
    vocabulary from: a worker that vLLM forked should not load a tokenizer or ICU."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=trust_remote_code)
    path = index_path(cache, tokenizer)
    if not path.exists():
        started = time.perf_counter()
        index, note = build_vocabulary(tokenizer_dir, trust_remote_code)
        index.save(path, note)
        logger.info("answer watch vocabulary built in %.1f s", time.perf_counter() - started)
    return path
