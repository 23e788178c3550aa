"""What points at a target without naming it: its works, roles, places and nicknames.

A target's associations are the distinctive proper phrases of what is known about it: the
operator's texts at once, and what the served model itself says about the name, learned in
the background (`guard_server.learner`). One association alone points at nobody in
particular (a question about "Star Wars" is often a question about its director, a neighbour
to keep); two of one target's associations in a text that asks about a person ("Who starred
as Luke Skywalker in Star Wars?", "the director of Batman Returns and Sleepy Hollow") point
at the target as surely as its name.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from wordfreq import zipf_frequency

from classifiers.lexical import STOPWORDS, normalize
from classifiers.names import DISTINCT_ZIPF, TITLES
from logits_processors.fold import words as folded_words

# The questions the served model is asked about a target (`{name}`): what it would write
# about the name is what a question about the target without the name can draw out.
QUESTIONS = (
    "What is {name} best known for? Name their most famous works, roles, companies and "
    "achievements.",
    "What other names, titles or nicknames is {name} known by?",
    "Which people, places and organisations are most closely associated with {name}?",
)
# A phrase of several words this common in English (wordfreq's Zipf scale: "New York" 5.3,
# "Star Wars" 4.5, "Hong Kong" 4.2) is everyday vocabulary, not a pointer at anyone; a lone
# word must be as rare as a distinct name part.
PHRASE_ZIPF = 4.5
# A phrase associated with more targets than this is generic ("Academy Award").
GENERIC_TARGETS = 3
MIN_CHARS = 4
MAX_WORDS = 6
# How many associations a target keeps: a bound on what one registration costs everyone.
MAX_PER_TARGET = 48
MIN_ASSOCIATIONS = 2
# Words that show a text asks about a person: "who", "the director of", "his".
PERSON_CUES = frozenset({
    "who", "whom", "whose", "which", "name", "named", "called", "identify", "person", "someone",
    "somebody", "he", "she", "his", "her", "him", "director", "author", "writer", "founder",
    "creator", "actor", "actress", "singer", "songwriter", "artist", "star", "rapper", "musician",
    "composer", "producer", "owner", "inventor", "host", "comedian", "player", "athlete",
})  # fmt: skip
_QUOTED = re.compile(r"[\"“”‘’«»]([^\"“”‘’«»\n]{3,80})[\"“”‘’«»]|(?<!\w)'([^'\n]{3,80})'(?!\w)")
# A capitalised word (or an initial), and a run of them joined by spaces and the small
# words titles hold ("Wheel of Fortune"); each run without those words counts on its own too
# ("Berkshire Hathaway" of "CEO of Berkshire Hathaway").
_WORD = r"(?:[A-Z][\w'’&-]*|[A-Z]\.)"
_CAPITALISED = re.compile(
    rf"(?<![\w'’]){_WORD}(?:\s+(?:(?:of|the|and|&|de|du|von|van)\s+)*{_WORD})*"
)
_CONNECTOR = re.compile(r"\s+(?:of|the|and|&|de|du|von|van)\s+")


@lru_cache(maxsize=65536)
def _zipf(phrase: str) -> float:
    return zipf_frequency(phrase, "en")


def _words(phrase: str) -> tuple[str, ...]:
    """A phrase's words as matched: small words at its ends dropped, unless the title is
    "The" and one word ("The Shining")."""
    words = normalize(phrase)
    while len(words) > 2 and (words[0] in STOPWORDS or words[0] in TITLES):
        words = words[1:]
    if len(words) == 2 and words[0] in TITLES:
        words = words[1:]
    while words and words[-1] in STOPWORDS:
        words = words[:-1]
    return tuple(words)


def distinctive(words: tuple[str, ...]) -> bool:
    """Whether a phrase's words point somewhere in particular: rare, as a whole."""
    if not words or len(words) > MAX_WORDS or sum(map(len, words)) < MIN_CHARS:
        return False
    if all(w.isdigit() for w in words):
        return False
    return _zipf(" ".join(words)) < (DISTINCT_ZIPF if len(words) == 1 else PHRASE_ZIPF)


def extract(text: str, names: Iterable[str]) -> list[str]:
    """The distinctive proper phrases of `text` (titles in quotes, runs of capitalised
    words), less the target's own names and their words: those are matched as names."""
    own = {w for name in names for w in normalize(name)}
    found: dict[tuple[str, ...], str] = {}
    spans = [m.group(1) or m.group(2) for m in _QUOTED.finditer(text)]
    for run in _CAPITALISED.finditer(text):
        parts = _CONNECTOR.split(run.group())
        spans += [run.group(), *parts] if len(parts) > 1 else parts
    for span in spans:
        span = span.strip(" .,;:!?-'’")
        words = _words(span)
        if words and not set(words) <= own and distinctive(words):
            found.setdefault(words, span)
    return list(found.values())


class AssociationIndex:
    """Every active target's associations; `match` says which targets a text points at."""

    def __init__(self, associations: dict[str, list[str]]):
        owners: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for target_id, phrases in associations.items():
            for phrase in phrases[:MAX_PER_TARGET]:
                words = _words(phrase)
                if distinctive(words):
                    owners[words].add(target_id)
        # Each phrase as written and folded as a disguise reads ("Skyw4lker", "Ѕtar Wars").
        self._by_first: dict[str, list[tuple[tuple[str, ...], str, str]]] = defaultdict(list)
        for words, targets in owners.items():
            if len(targets) > GENERIC_TARGETS:
                continue
            key = " ".join(words)
            for form in dict.fromkeys((words, tuple(folded_words(key)))):
                for target_id in targets:
                    self._by_first[form[0]].append((form, target_id, key))
        self.size = len(owners)

    def match(self, text: str) -> dict[str, list[str]]:
        """Target id -> the associations found, for each target of which `text` holds two
        that do not overlap, when the text asks about a person."""
        if not self._by_first:
            return {}
        plain = normalize(text)
        if not PERSON_CUES.intersection(plain):
            return {}
        hits: dict[str, list[str]] = {}
        # A cue inside a phrase found ("Star" of "Star Wars") does not ask about a person.
        for words in (plain, folded_words(text)):
            found: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
            for i, word in enumerate(words):
                for form, target_id, key in self._by_first.get(word, ()):
                    if tuple(words[i : i + len(form)]) == form:
                        found[target_id].setdefault(key, (i, i + len(form)))
            for target_id, spans in found.items():
                kept = _apart(spans)
                inside = {i for a, b in kept.values() for i in range(a, b)}
                asks = any(w in PERSON_CUES for i, w in enumerate(words) if i not in inside)
                enough = len(kept) >= MIN_ASSOCIATIONS
                if asks and enough and len(kept) > len(hits.get(target_id, ())):
                    hits[target_id] = list(kept)
        return hits


def _apart(spans: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The phrases found, longest first, less those inside or across one already kept
    ("Shawshank Redemption" inside "Rita Hayworth and Shawshank Redemption" is one)."""
    kept: list[tuple[str, tuple[int, int]]] = []
    for phrase, (a, b) in sorted(spans.items(), key=lambda item: item[1][0] - item[1][1]):
        if all(b <= a2 or a >= b2 for _, (a2, b2) in kept):
            kept.append((phrase, (a, b)))
    return dict(kept)
