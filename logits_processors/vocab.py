"""The vocabulary as the answer watch reads it: each token's bytes, and what it folds to."""

from __future__ import annotations

import hashlib
import os
import pickle
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from logits_processors.fold import (
    AS_BREAK,
    AS_LETTERS,
    BANGED,
    BREAK,
    MARK_LETTERS,
    OUTSIDE,
    RAW,
    UNSURE,
    fold_char,
    load_table,
    mark,
    readings,
    sure_readings,
)

FORMAT = 10  # of the saved index: bump when folding or the index changes

_SENTINEL = chr(0x10FFFF)  # sorts after every folded symbol ("€" and "¥" read raw too)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character standing for a byte."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = [*printable, *(256 + i for i in range(len(extra)))]
    return {chr(c): b for c, b in zip(chars, [*printable, *extra], strict=True)}


def token_bytes(tokenizer: Any) -> list[bytes]:
    """Every token's bytes (b"" for special tokens), for byte-level BPE and SentencePiece
    vocabularies alike; a token that is part of a character has part of its bytes."""
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    decoder = _byte_decoder()
    byte_level = all(c in decoder for p in pieces[:1000] if p for c in p)
    out: list[bytes] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            out.append(b"")
        elif byte_level and all(c in decoder for c in piece):
            out.append(bytes(decoder[c] for c in piece))
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            out.append(bytes([int(piece[3:5], 16)]))  # SentencePiece byte fallback
        else:
            out.append(piece.replace("\u2581", " ").encode())
    return out


def special_ids(tokenizer: Any) -> set[int]:
    """The tokenizer's special tokens: an answer's end token among them."""
    return set(getattr(tokenizer, "all_special_ids", ()) or ())


class VocabIndex:
    """Each token's marked fold (`logits_processors.fold.mark`), and every folded text it
    reads as after a word (`gap` False) and after a break (`gap` True), sorted per case so
    that "the tokens one of whose readings begins with X" is one slice.

    The tokens in `breaks` (the special tokens: the end token, a turn's end) write no text
    but end the word before them: "Cher" then the end token names Cher, as "Cher." does.
    """

    def __init__(self, pieces: list[bytes], breaks: set[int] | frozenset[int] = frozenset()):
        self.pieces = pieces
        self.breaks = np.asarray(sorted(breaks), dtype=np.int64)
        size = len(pieces)
        self.clean = np.zeros(size, dtype=bool)  # decodes alone (not part of a character)
        self.marked: list[str] = []
        for token_id, piece in enumerate(pieces):
            try:
                text = " " if token_id in breaks else piece.decode("utf-8")
                self.clean[token_id] = True
            except UnicodeDecodeError:
                text = ""
            self.marked.append(mark(text))
        self.partial = np.flatnonzero(~self.clean)
        self.led = np.asarray([m[:1] in MARK_LETTERS for m in self.marked], dtype=bool)
        self.spaced = np.asarray([m[:1] == BREAK for m in self.marked], dtype=bool)
        everyone, led = range(size), np.flatnonzero(self.led).tolist()
        self.keys: list[list[str]] = []
        self.ids: list[np.ndarray] = []
        # A token that begins with marks, read inside a run of marks (`run_keys[gap][run]`).
        self.run_keys: list[dict[int, tuple[list[str], np.ndarray]]] = []
        for gap in (False, True):
            keys, ids = self._sorted(everyone, gap, OUTSIDE)
            self.keys.append(keys)
            self.ids.append(ids)
            runs = (AS_LETTERS, AS_BREAK, RAW, BANGED)
            self.run_keys.append({run: self._sorted(led, gap, run) for run in runs})
        self.max_len = max((len(k) for k in self.keys[0] + self.keys[1]), default=0)

    def _sorted(self, tokens, gap: bool, run: int) -> tuple[list[str], np.ndarray]:
        found = sorted((text, t) for t in tokens for text, _ in readings(self.marked[t], gap, run))
        return [text for text, _ in found], np.asarray([t for _, t in found], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.pieces)

    def text(self, ids: Sequence[int]) -> str:
        """What the tokens write, ids outside the vocabulary and broken characters left out."""
        pieces = self.pieces
        return b"".join(pieces[t] for t in ids if t < len(pieces)).decode("utf-8", "ignore")

    def starting_with(self, gap: bool, prefix: str, run: int = OUTSIDE) -> np.ndarray:
        """Token ids a reading of which (after `gap`, inside a run of marks read one way,
        or none: `run`) begins with `prefix`."""
        found = _slice(self.keys[gap], self.ids[gap], prefix)
        if run == UNSURE:  # a name is completed only at or after a real letter
            marked = self.marked
            found = np.asarray(
                [
                    t
                    for t in found.tolist()
                    if any(
                        text.startswith(prefix) and first < len(prefix)
                        for text, first in sure_readings(marked[t], gap)
                    )
                ],
                dtype=np.int64,
            )
        elif run != OUTSIDE:  # a token that begins with marks goes on with the run
            led = _slice(*self.run_keys[gap][run], prefix)
            others = found[~self.led[found]]
            if run == BANGED:  # after a "!" read as a letter, a word break reads nothing
                others = others[~self.spaced[others]]
            found = np.concatenate([others, led])
        return found if len(found) < 2 else np.unique(found)

    def save(self, path: Path, note: tuple[int, ...]) -> None:
        """The index, the trip note's tokens and the folds of every character of the
        vocabulary, for a worker that loads them (`load`) instead of building them."""
        chars = {c for p in self.pieces for c in p.decode("utf-8", errors="ignore")}
        table = {c: fold_char(c) for c in chars if not c.isascii()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps((FORMAT, self, note, table)))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> tuple[VocabIndex, tuple[int, ...]]:
        """A saved index and note; its character folds replace ICU in this process."""
        version, index, note, table = pickle.loads(Path(path).read_bytes())
        if version != FORMAT:
            raise ValueError(f"{path}: a vocabulary index of another format; rebuild it")
        load_table(table)
        return index, note


def _slice(keys: list[str], ids: np.ndarray, prefix: str) -> np.ndarray:
    """The ids whose key begins with `prefix` (keys sorted)."""
    lo = bisect_left(keys, prefix)
    return ids[lo : bisect_left(keys, prefix + _SENTINEL, lo)]


def index_path(cache: Path, tokenizer: Any) -> Path:
    """Where a tokenizer's index is cached: named by its vocabulary and the index format."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    digest = hashlib.sha256("\x00".join(map(str, pieces)).encode()).hexdigest()[:16]
    return cache / f"watch-vocab-{FORMAT}-{digest}.pickle"
