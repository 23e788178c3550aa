"""A target's rare surname alone, as the answer watch looks for it.

"Springsteen" alone names Bruce Springsteen. Where the answer watch finds it depends on the
words around it in English: a surname no English word contains ("springsteen") is the name
wherever its letters are written ("by-Springsteen", "Springsteen-esque", an emoji after it);
one that only begins no other word ("rowling", inside "prowling") from a word's start on; one
that begins other words ("Brando": "Brandon") as a whole word ("Brando's" too).
"""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from typing import NamedTuple

from logits_processors.fold import BREAK, JOINERS, LEET, SAME, phrase_patterns, spelled_patterns

# Shorter surnames are matched as whole words only.
OPEN_ENDED_LETTERS = 5


class Part(NamedTuple):
    """A part of a target's name that names it alone ("springsteen"), and the target's own
    name words: the words before it tell whether it names someone else ("Billy Ray
    Cyrus"), as the prompt screen reads them (`classifiers.names.someone_else`)."""

    word: str
    own: frozenset[str]


@lru_cache(maxsize=1)
def _words() -> tuple[list[str], str]:
    """English words and census given names as the fold writes them ("prowling":
    "prowiing"), sorted, and all of them in one text, a word a line."""
    from wordfreq import iter_wordlist

    from classifiers.names import given_names

    table = str.maketrans({c: None for c in JOINERS})
    words = {
        folded(w.translate(table)) for w in (*iter_wordlist("en"), *given_names()) if w.isascii()
    }
    words.discard("")
    ordered = sorted(words)
    return ordered, "\n" + "\n".join(ordered) + "\n"


def folded(word: str) -> str:
    """A lower-case ASCII word as the fold writes it."""
    return word.translate(LEET).translate(SAME)


def begins_other_words(part: str) -> bool:
    """Whether a word other than `part` (folded; its plural aside) begins with it: "brando"
    begins "brandon", "weich" "weicher"."""
    words, _ = _words()
    at = bisect_left(words, part)
    while at < len(words) and words[at].startswith(part):
        if words[at][len(part) :] not in ("", "s"):
            return True
        at += 1
    return False


def inside_other_words(part: str) -> bool:
    """Whether a word has `part` (folded) inside it after its start: "rowiing" in
    "prowiing"."""
    _, text = _words()
    at = text.find(part)
    while at >= 0:
        if text[at - 1] != "\n":
            return True
        at = text.find(part, at + 1)
    return False


def part_patterns(phrases: list[str], refuse: bool) -> dict[str, tuple[bool, Part]]:
    """The surnames of a target's names that name it alone: rare words
    (`classifiers.names.name_parts`: "Springsteen", "Minnelli", not "Swift") that are no
    one's given name (not "Rhea", "Miley"), written and spelled out, each with its policy
    and its `Part`. A pattern that does not end with a word break is open-ended: it matches
    from the surname's last letter on, whatever follows."""
    from classifiers.lexical import normalize
    from classifiers.names import SUFFIXES, given_names, name_parts, own_words

    distinct, _ = name_parts(phrases)
    own = own_words(phrases)
    last: set[str] = set()
    for phrase in phrases:
        words = [w for w in normalize(phrase.split(",")[0]) if w not in SUFFIXES]
        if len(words) > 1:  # a one-word name ("Beyoncé") is watched whole
            last.add(words[-1])
    out = {}
    for word in distinct:
        if word not in last or word in given_names():
            continue
        part, letters = Part(word, own), folded(word)
        whole = len(letters) < OPEN_ENDED_LETTERS or begins_other_words(letters)
        # Open-ended patterns come with whole-word ones: the watch reads a surname written
        # with a joiner inside ("Sage-toned", "Spring-steen") as a whole word only.
        tails = (BREAK, "s" + BREAK) if whole else ("", BREAK, "s" + BREAK)
        plain = phrase_patterns(word)
        if not whole and not inside_other_words(letters):
            plain = [p.lstrip(BREAK) for p in plain]
        for pattern in plain + spelled_patterns(word):
            for tail in tails:
                out[pattern + tail] = (refuse, part)
    return out
