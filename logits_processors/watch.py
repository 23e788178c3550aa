"""The answer watch: every request's answer, followed as it is written, against every active
target's names, however the tokenizer splits them and however they are disguised.

A row's state is a node of one automaton over all targets' folded names
(`FoldedAutomaton`). Before each token, `banned` says which next tokens would complete a
name: they are banned, and when the model's own choice is one of them and the name's
target is refused, the answer "trips": it ends with the refusal note (`TripNote`), which
the server turns into the whole refusal for an answer not yet sent. A row whose next token
can complete no name is never touched, so such answers are bit-identical to an unguarded
engine's.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from logits_processors.automaton import EMPTY
from logits_processors.fold import (
    BANGED,
    BREAK,
    JOIN,
    MARK_LETTERS,
    OUTSIDE,
    RISE,
    SPACE,
    Folder,
    fold_char,
    letter_count,
    mark,
    phrase_patterns,
    readings,
    rise_patterns,
    spelled_patterns,
)
from logits_processors.surnames import Part, folded
from logits_processors.vocab import VocabIndex
from logits_processors.watch_automaton import FoldedAutomaton, State, States

# A token's symbols after which a pattern may begin inside it: marks, which read as a break,
# and a rise.
_STARTS = (*MARK_LETTERS, RISE)
# The honest refusal. A tripped answer ends with it as a note (`TRIP_NOTE`); a server that
# has not sent the answer yet replaces the answer whole with the refusal.
REFUSAL = "I'm sorry, I can't share information about that."
TRIP_NOTE = "\n\n" + REFUSAL
# Names this short match only as whole words: "Cher" names nobody in "Cherokee". "Cher's"
# and "Chers" are the whole word too (the apostrophe joins: "cher's" reads "chers").
WHOLE_WORD_BELOW = 5
PROMPT_TAIL_TOKENS = 32
MAX_CACHED = 1 << 18
# A name this far written ("J. K. Row": at least half its letters, and four) is being
# written: a client's constraint that rules out every way to finish it is steering the
# answer away from the name, and the answer trips as if the model had chosen it.
STEERED_LETTERS = 4


class Bans(NamedTuple):
    """What the watch bans before a row's next token."""

    tokens: np.ndarray  # every token that would complete a name
    refused: np.ndarray  # those that complete a refused target's name
    steered: np.ndarray  # those of them that finish a name already half written
    parts: np.ndarray = EMPTY  # those that complete a name's part alone, and nothing more
    words: tuple[Part, ...] = ()  # the parts they complete
    open: np.ndarray = EMPTY  # those of them that complete it only open-ended
    written: int = 0  # the fewest letters of an open-ended part written so far

    def without(self, ids: np.ndarray) -> Bans:
        """These bans with `ids` (some of `parts`) lifted."""
        kept = [np.setdiff1d(i, ids, assume_unique=True) for i in self[:4]]
        opened = np.setdiff1d(self.open, ids, assume_unique=True)
        return Bans(*kept, self.words if len(kept[3]) else (), opened, self.written)

    @staticmethod
    def merged(found: list[Bans]) -> Bans:
        """The bans of an answer read several ways at once (a mark read as a letter and as a
        break): a token that completes a whole name in one reading is no part in any."""
        if len(found) == 1:
            return found[0]
        named = _union([np.setdiff1d(b.tokens, b.parts, assume_unique=True) for b in found])
        parts = np.setdiff1d(_union([b.parts for b in found]), named, assume_unique=True)
        opened = np.intersect1d(_union([b.open for b in found]), parts, assume_unique=True)
        return Bans(
            np.union1d(named, parts),
            _union([b.refused for b in found]),
            _union([b.steered for b in found]),
            parts,
            tuple(sorted({w for b in found for w in b.words}, key=lambda part: part.word)),
            opened,
            min((b.written for b in found if len(b.open)), default=0),
        )


@dataclass(frozen=True)
class TripNote:
    """The tokens a tripped answer ends with: a mark, the note's text, the end token.

    The mark is a spare special token of the tokenizer (no end, start, padding or unknown
    token, none the chat template writes). It writes no text, so a client's stop string
    cannot cut the trip out of the answer (`stop: ["\\n"]` cut the note's first character
    and returned the answer up to the name the watch withheld), and a stop token or a token
    limit ends the answer after it: the server reads the trip from the token ids. A
    tokenizer with no spare special token has no mark, and its trip is read from the note's
    first words.
    """

    ids: tuple[int, ...]
    least: int  # how many of them an answer must end with to have tripped

    @classmethod
    def of(cls, tokenizer: Any) -> TripNote:
        text = tuple(tokenizer.encode(TRIP_NOTE, add_special_tokens=False))
        mark = spare_special_token(tokenizer)
        if mark is not None:
            return cls((mark, *text, tokenizer.eos_token_id), 1)
        # No mark: the note's first words ("\n\nI'm sorry"), which no answer ends with by chance.
        words = TRIP_NOTE[: TRIP_NOTE.index(",")]
        return cls(
            (*text, tokenizer.eos_token_id), len(tokenizer.encode(words, add_special_tokens=False))
        )

    @property
    def marked(self) -> bool:
        return self.least == 1

    def start(self, ids: Sequence[int]) -> int:
        """Where the note starts in an answer's token ids (whole, or cut short by a stop
        or a token limit, or followed by more end tokens), or -1."""
        ids, end_token = list(ids), self.ids[-1]
        end = len(ids)
        while end and ids[end - 1] == end_token:
            end -= 1
        body = list(self.ids[:-1])
        for at in range(max(0, end - len(body)), end - self.least + 1):
            if ids[at:end] == body[: end - at]:
                return at
        return -1

    def begun(self, ids: Sequence[int]) -> bool:
        """Whether `ids` end with fewer of the note's first tokens than `start` needs: a trip
        perhaps under way (never, where the note begins with its mark)."""
        body, ids = list(self.ids[:-1]), list(ids)
        return any(ids[-k:] == body[:k] for k in range(1, min(self.least, len(ids) + 1)))


def spare_special_token(tokenizer: Any) -> int | None:
    """The highest special token the tokenizer has that nothing else uses (see `TripNote`)."""
    taken = set(getattr(tokenizer, "all_special_ids", ()) or ())
    template = str(getattr(tokenizer, "chat_template", None) or "")
    spare = [
        token_id
        for token_id, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items()
        if token.special
        and token_id not in taken
        and token.content not in template
        and tokenizer.decode([token_id], skip_special_tokens=True) == ""
    ]
    return max(spare, default=None)


def watch_patterns(phrases: list[str], refuse: bool) -> list[tuple[str, bool]]:
    """The folded patterns of a target's names (`phrase_patterns`), spelled out too
    (`spelled_patterns`) and in camel case (`rise_patterns`), with its policy."""
    out = []
    for phrase in phrases:
        for pattern in phrase_patterns(phrase) + spelled_patterns(phrase) + rise_patterns(phrase):
            if letter_count(pattern) < WHOLE_WORD_BELOW:
                out += [(pattern + BREAK, refuse), (pattern + "s" + BREAK, refuse)]
            else:
                out.append((pattern, refuse))
    return out


@dataclass
class WatchRow:
    """One request's answer as the watch has read it so far."""

    output: list[int]  # vLLM's live list of the request's generated tokens
    prompt: Any = ()  # the whole prompt's token ids (a list, or a tensor read when needed)
    head: str | None = None  # the prompt's tail, marked (`mark`): a name may begin there
    head_text: str = ""  # the prompt's tail as written
    states: States = frozenset({(0, True, 0)})  # where the answer's readings stand
    consumed: int = 0
    pending: bytes = b""  # the start of a character split between tokens
    trip_from: int = -1  # where the refusal note started (-1: not tripped)
    bias: dict[int, float] | None = None  # the client's logit_bias, taken out of the choice
    prompt_folded: str | None = None  # the prompt as the fold reads it, when needed
    decoder: codecs.IncrementalDecoder | None = field(default=None, repr=False)

    @property
    def tripped(self) -> bool:
        return self.trip_from >= 0

    def trip(self) -> None:
        if not self.tripped:
            self.trip_from = len(self.output)


class Watch:
    """One automaton over every active target's names, and the vocabulary it reads."""

    def __init__(
        self,
        automaton: FoldedAutomaton,
        vocab: VocabIndex,
        note: tuple[int, ...],
        generation: int = 0,
        parts: dict[str, Part] | None = None,
    ):
        self.automaton = automaton
        self.vocab = vocab
        self.note = note
        self.generation = generation
        self.parts = parts or {}  # contextual pattern -> the part it writes
        self._steps: dict[tuple[int, bool, int, int], tuple[States, bool]] = {}
        self._banned: dict[State, Bans] = {}
        self._lifted: dict[tuple[int, bool, int, bool], Bans] = {}
        self._split: dict[tuple[States, bytes], Bans] = {}
        self._merged: dict[frozenset[tuple[int, bool, int, int]], Bans] = {}
        self._whole = [self._whole_names(gap) for gap in (False, True)]
        self._not_steering = np.union1d(vocab.breaks, vocab.partial)

    def _whole_names(self, gap: bool) -> tuple[np.ndarray, np.ndarray]:
        """Tokens a reading of which holds a whole pattern, from any state (" Hogwarts",
        "-Hogwarts")."""
        auto, found, refused = self.automaton, [], []
        for token_id, marked in enumerate(self.vocab.marked):
            if not any(c.isalpha() for c in marked):  # a name needs a real letter
                continue
            if BREAK not in marked and not any(c in marked for c in _STARTS):
                continue
            for text, _ in readings(marked, gap):
                for start in (i for i, c in enumerate(text) if c in (BREAK, RISE)):
                    for end in range(start + 2, min(len(text), start + auto.max_len) + 1):
                        index = auto.index.get(text[start:end], -1)
                        if index >= 0 and not auto.contextual[index]:
                            found.append(token_id)
                            if auto.refuse[index]:
                                refused.append(token_id)
        return np.unique(np.asarray(found, np.int64)), np.unique(np.asarray(refused, np.int64))

    def reread(self, row: WatchRow) -> None:
        """Read a row from its start: a new row, or every row once the automaton changed.
        A name may begin in the prompt and end in the answer: the prompt's tail is read
        first."""
        if row.head is None:
            row.head_text = self.vocab.text(_ids(row.prompt[-PROMPT_TAIL_TOKENS:]))
            row.head = mark(row.head_text)
        row.states, _ = self.automaton.read_tail(row.head)
        row.consumed, row.pending, row.decoder = 0, b"", None
        if self.advance(row):
            row.trip()

    def advance(self, row: WatchRow) -> bool:
        """Read the row's new tokens; True when they completed a name (a token no ban
        stopped: one written while a character was split between tokens)."""
        named = False
        while row.consumed < len(row.output):
            token = row.output[row.consumed]
            row.consumed += 1
            named |= self._step(row, token)
        return named

    def _step(self, row: WatchRow, token: int) -> bool:
        vocab = self.vocab
        if token >= len(vocab):
            return False
        if not row.pending and vocab.clean[token]:
            after, named = [], False
            for state in row.states:
                key = (*state, token)
                found = self._steps.get(key)
                if found is None:
                    found = self.automaton.read(frozenset((state,)), vocab.marked[token])
                    if len(self._steps) < MAX_CACHED:
                        self._steps[key] = found
                after.append(found[0])
                named = named or found[1]
            row.states = after[0] if len(after) == 1 else frozenset().union(*after)
            return named
        if row.decoder is None:
            row.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = mark(row.decoder.decode(vocab.pieces[token]))
        row.pending = row.decoder.getstate()[0]
        row.states, named = self.automaton.read(row.states, text)
        return named

    def banned(self, row: WatchRow) -> Bans:
        """The next tokens that would complete a name (`Bans`): a surname alone only where
        the words before it do not name someone else, and open-ended only where the letters
        of it written so far have no joiner inside ("Sage-toned" is no "Saget")."""
        if row.pending:
            return self._banned_split(row)
        if len(row.states) == 1:
            return self._banned_reading(row, *next(iter(row.states)))[0]
        states = list(row.states)
        read = [self._banned_reading(row, *state) for state in states]
        key = frozenset((*s, lifted) for s, (_, lifted) in zip(states, read, strict=True))
        merged = self._merged.get(key)
        if merged is None:
            merged = Bans.merged([bans for bans, _ in read])
            if len(self._merged) < MAX_CACHED:
                self._merged[key] = merged
        return merged

    def _banned_reading(self, row: WatchRow, node: int, gap: bool, run: int) -> tuple[Bans, int]:
        """The bans of one reading of the row, and which of its parts were lifted (0: none,
        1: every part, 2: the open-ended ones)."""
        bans = self.banned_at(node, gap, run)
        if not len(bans.parts):
            return bans, 0
        if self._someone_else(row, bans.words):
            return self._lift((node, gap, run), bans, True), 1
        if len(bans.open) and self._joined(row, bans.written) and not _long(bans.words):
            return self._lift((node, gap, run), bans, False), 2
        return bans, 0

    def _lift(self, state: State, bans: Bans, every: bool) -> Bans:
        key = (*state, every)
        found = self._lifted.get(key)
        if found is None:
            found = bans.without(bans.parts if every else bans.open)
            if len(self._lifted) < MAX_CACHED:
                self._lifted[key] = found
        return found

    def banned_at(self, node: int, gap: bool, run: int = OUTSIDE) -> Bans:
        key = (node, gap, run)
        found = self._banned.get(key)
        if found is None:
            found = self._banned_at(node, gap, run)
            if len(self._banned) < MAX_CACHED:
                self._banned[key] = found
        return found

    def _banned_at(self, node: int, gap: bool, run: int) -> Bans:
        auto = self.automaton
        whole, whole_refused = self._whole[gap]
        found, refused, steered, alone, words = [whole], [whole_refused], [EMPTY], [], set()
        closed, opened, least = [EMPTY], [], 1 << 30
        for start in auto.chain(node):
            written = auto.letters_at(start)
            for index, rest in auto.rests(start):
                if len(rest) > self.vocab.max_len:
                    continue
                ids = self.vocab.starting_with(gap, rest, run)
                if rest == BREAK and run != BANGED:  # a token that begins a character may
                    ids = np.union1d(ids, self.vocab.partial)  # end the word
                if not len(ids):
                    continue
                if auto.contextual[index]:
                    alone.append(ids)
                    words.add(self.parts[auto.patterns[index]])
                    if auto.patterns[index].endswith(BREAK):
                        closed.append(ids)
                    else:
                        opened.append(ids)
                        least = min(least, written)
                else:
                    found.append(ids)
                if auto.refuse[index]:
                    refused.append(ids)
                    if written >= max(STEERED_LETTERS, (auto.letters[index] + 1) // 2):
                        steered.append(ids)
        if len(found) == 1 and not alone:
            return Bans(whole, whole_refused, EMPTY)
        named = np.unique(np.concatenate(found))
        parts = np.setdiff1d(np.concatenate(alone), named) if alone else EMPTY
        # `min_tokens` and a grammar inside a string rule out the end token by themselves,
        # and many a rule a token that is part of a character.
        steered_ids = np.setdiff1d(np.concatenate(steered), self._not_steering)
        open_ids = EMPTY
        if opened:
            open_ids = np.setdiff1d(np.concatenate(opened), np.concatenate(closed))
            open_ids = np.intersect1d(open_ids, parts, assume_unique=True)
        return Bans(
            np.union1d(named, parts),
            np.unique(np.concatenate(refused)),
            steered_ids,
            parts,
            tuple(sorted(words, key=lambda part: part.word)) if len(parts) else (),
            open_ids,
            least if len(open_ids) else 0,
        )

    def _banned_split(self, row: WatchRow) -> Bans:
        """While a character is split between tokens: try every token that may end it. Any
        other token ends it as U+FFFD, a word break. A name found this way is refused
        whatever its target's policy (the slow path does not track which name it was).
        Kept per state and pending bytes: an answer in a script of many-byte characters
        passes here at most steps."""
        key = (row.states, row.pending)
        found = self._split.get(key)
        if found is None:
            found = self._banned_split_at(*key)
            if len(self._split) < MAX_CACHED:
                self._split[key] = found
        return found

    def _banned_split_at(self, states: States, pending: bytes) -> Bans:
        auto = self.automaton
        after_break, _ = auto.read(states, BREAK)
        bans = [self.banned_at(node, True) for node in {node for node, _, _ in after_break}]
        found, refused = [b.tokens for b in bans], [b.refused for b in bans]
        first = len(found)
        for token in self.vocab.partial.tolist():
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            decoder.setstate((pending, 0))
            text = mark(decoder.decode(self.vocab.pieces[token]))
            if auto.read(states, text, parts=True)[1]:
                found.append(np.asarray([token], np.int64))
        refused.extend(found[first:])
        return Bans(np.unique(np.concatenate(found)), np.unique(np.concatenate(refused)), EMPTY)

    def act(
        self, logits: torch.Tensor, rows: dict[int, WatchRow], skip: set[int]
    ) -> dict[int, tuple[int, np.ndarray]]:
        """One step of the watch over a batch: for each row it acts on (its logits row),
        the token it must write (-1: none) and the tokens it may not. A row whose next
        token could complete a refused target's name trips when its model chooses such a
        token, or when a client's constraint steers it away from a name half written
        (`_chooses`). Rows in `skip` (already refused) are not read."""
        acts: dict[int, tuple[int, np.ndarray]] = {}
        choosing: list[tuple[int, WatchRow, Bans]] = []
        for index, row in rows.items():
            if index in skip:
                continue
            if self.advance(row):
                row.trip()
            if row.tripped:
                acts[index] = (self.forced(row), EMPTY)
                continue
            bans = self.banned(row)
            if len(bans.tokens):
                acts[index] = (-1, bans.tokens)
                if len(bans.refused):
                    choosing.append((index, row, bans))
        if choosing:
            tops = logits[[index for index, _, _ in choosing]].argmax(dim=1).tolist()
            for (index, row, bans), top in zip(choosing, tops, strict=True):
                if _chooses(logits[index], top, row.bias, bans):
                    row.trip()
                    acts[index] = (self.forced(row), EMPTY)
        return acts

    def _someone_else(self, row: WatchRow, words: tuple[Part, ...]) -> bool:
        """Whether the surname being written names another person whom the client named
        whole ("Who is Pamela Springsteen?", then "Pamela Springsteen is an actress", with
        Bruce Springsteen registered): the word before it in the answer is a given name,
        not one edit from the target's own ("Bruse"), naming someone else as the prompt
        screen reads it (`someone_else`), and the prompt holds that given name and the
        surname together, as the fold reads them. A given name alone excuses nothing: a
        client that writes "Xavier", or asks for any first name and then the singer's
        surname, asks for the surname."""
        from classifiers.lexical import deletes, normalize
        from classifiers.names import given_names, someone_else

        prompt = self._prompt_folded(row)
        if not all(folded(part.word) in prompt for part in words):
            return False
        text = self._recent_text(row)
        end = len(text)  # the part's letters written so far are replaced by the whole part
        while end and fold_char(text[end - 1])[0] != SPACE:
            end -= 1
        before = normalize(text[:end])
        if not before or before[-1] not in given_names():
            return False
        given, near = before[-1], deletes(before[-1])
        for part in words:
            if any(near & deletes(w) for w in part.own):
                return False
            if not someone_else(text[:end] + part.word, part.word, set(part.own)):
                return False
            if f"{BREAK}{folded(given)}{BREAK}{folded(part.word)}" not in prompt:
                return False
        return True

    def _prompt_folded(self, row: WatchRow) -> str:
        if row.prompt_folded is None:
            row.prompt_folded = BREAK + Folder(True).feed(self.vocab.text(_ids(row.prompt))) + BREAK
        return row.prompt_folded

    def _recent_text(self, row: WatchRow, tokens: int = PROMPT_TAIL_TOKENS) -> str:
        """The answer's last tokens as written, after the prompt's tail while it is short."""
        text = self.vocab.text(row.output[-tokens:])
        return row.head_text + text if len(row.output) < tokens else text

    def _joined(self, row: WatchRow, letters: int) -> bool:
        """Whether a joiner ("-", ".", "'") stands inside the last `letters` letters the
        answer wrote: "sage-t" is no "saget". (A token writes a letter at least, or a joiner
        or a break, which end the search: `letters` tokens back suffice.)"""
        for char in reversed(self._recent_text(row, min(letters + 2, PROMPT_TAIL_TOKENS))):
            if letters <= 0:
                return False
            kind, out = fold_char(char)
            if kind == JOIN:
                return True
            if kind == SPACE:
                return False
            letters -= len(out)
        return False

    def forced(self, row: WatchRow) -> int:
        """The note token a tripped row must write next (then the end token), or -1."""
        if not row.tripped:
            return -1
        return self.note[min(len(row.output) - row.trip_from, len(self.note) - 1)]


# A surname this long is the name even written with a joiner inside and more letters after
# it ("Spring-steenesque"): only a shorter one's letters meet across a joiner by chance
# ("Sage-toned" is no "Saget").
JOINED_OPEN_LETTERS = 8


def _long(parts: tuple[Part, ...]) -> bool:
    return any(len(folded(part.word)) >= JOINED_OPEN_LETTERS for part in parts)


def _union(arrays: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(arrays)) if arrays else EMPTY


def _ids(ids: Any) -> Sequence[int]:
    """Token ids as a list: vLLM's list, or a view of the runner's token history (MRV2)."""
    return ids.tolist() if hasattr(ids, "tolist") else ids


def _chooses(logits: torch.Tensor, top: int, bias: dict[int, float] | None, bans: Bans) -> bool:
    """Whether a row's answer would complete a refused name: its top token is one, with the
    client's logit_bias or without it (the model's own choice); or a way to finish a name it
    has half written is ruled out (-inf: `bad_words`, `allowed_token_ids` or a grammar;
    nothing of the model's own is -inf), so the client steers it off the name ("J. K. Row"
    then "ley")."""
    tops = [top]
    if bias:
        ids = torch.tensor(list(bias), dtype=torch.long, device=logits.device)
        values = torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
        tops.append(int(logits.index_add(0, ids, -values).argmax()))
    for top in tops:
        at = int(np.searchsorted(bans.refused, top))
        if at < len(bans.refused) and bans.refused[at] == top:
            return True
    if not len(bans.steered):
        return False
    steered = torch.from_numpy(bans.steered).to(logits.device)
    return bool(torch.isneginf(logits[steered]).any())
