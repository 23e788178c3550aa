"""How a text reads, letter by letter: the fold that the answer watch and the name screen share.

A reader reads "Hаrry" (Cyrillic а), "Ｈａｒｒｙ", "H4rry", "Har-ry" and "harry" as one word. Each
character folds to letters (compatibility forms, Unicode TR39 confusable skeletons through
ICU, transliteration of other scripts through anyascii, case, leetspeak digits), to nothing
inside a word (joiners: "-", ".", "'"; invisible characters), or to a word break. The folded
text is lower-case ASCII letters and digits with one space at each word break, and begins
with a space: a name is matched from the start of a word.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

BREAK = " "
# Inside a word these join its letters ("Har-ry", "J.K.", "Potter's", "Rowl*ng").
JOINERS = frozenset("-\u2010\u2011\u00ad._\u00b7*'\u2019`")
# Digits and signs read as letters inside a name ("H4rry P0tt3r", "Row1ing", "$teve").
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
LEET_SIGNS = {"@": "a", "$": "s"}
# "l" and "i" (and "1", "I", "|") read alike in many fonts: one letter for all of them.
SAME = str.maketrans({"l": "i"})
LETTER, JOIN, SPACE, NOTHING = 0, 1, 2, 3
# Folds computed beforehand for the characters of a vocabulary (`load_table`): an engine
# worker reads them instead of calling ICU, which it should not load after vLLM forked it.
_TABLE: dict[str, tuple[int, str]] = {}
_ICU = True


def load_table(table: dict[str, tuple[int, str]], icu: bool = False) -> None:
    """Use precomputed folds; without `icu`, other characters fold without ICU (their
    compatibility and accent-free forms, then transliteration), which covers all but
    look-alike letters outside the table."""
    global _ICU
    _TABLE.update(table)
    _ICU = icu
    fold_char.cache_clear()


@lru_cache(maxsize=1)
def _spoof_checker():
    import icu

    return icu.SpoofChecker()


def _skeleton(char: str) -> str:
    import icu

    checker = _spoof_checker()
    return checker.getSkeleton(icu.USpoofChecks.ALL_CHECKS, char)


@lru_cache(maxsize=65536)
def fold_char(char: str) -> tuple[int, str]:
    """(kind, letters) of one character: LETTER with its folded letters, JOIN, SPACE, or
    NOTHING (renders as nothing: zero-width characters, direction marks)."""
    if char.isascii():
        if char.isalnum():
            return LETTER, char.lower().translate(LEET).translate(SAME)
        if char in LEET_SIGNS:
            return LETTER, LEET_SIGNS[char]
        return (JOIN, "") if char in JOINERS else (SPACE, "")
    if char in JOINERS:
        return JOIN, ""
    category = unicodedata.category(char)
    if category in ("Cf", "Mn", "Me") or category == "Cc" and not char.isspace():
        return NOTHING, ""
    if category[0] not in "LN":
        return SPACE, ""
    if char in _TABLE:
        return _TABLE[char]
    compat = unicodedata.normalize("NFKC", char)
    if compat != char:
        return _fold_text(compat)
    skeleton = unicodedata.normalize("NFKD", _skeleton(char) if _ICU else char)
    letters = "".join(c for c in skeleton if not unicodedata.combining(c))
    if not (letters.isascii() and letters.isalnum()):
        from anyascii import anyascii

        letters = "".join(c for c in anyascii(char) if c.isalnum())
    if not letters:
        return NOTHING, ""
    return LETTER, letters.lower().translate(LEET).translate(SAME)


def _fold_text(text: str) -> tuple[int, str]:
    """A character that is several under compatibility folding ("ﬁ", "½"): its letters."""
    kinds = [fold_char(c) for c in text]
    letters = "".join(s for _, s in kinds)
    if letters:
        return LETTER, letters
    return min((k for k, _ in kinds), default=NOTHING), ""


class Folder:
    """Folds a text that arrives in pieces (a stream of tokens) exactly as `fold` folds it
    whole. `gap` is True once a word break has been written and no letter has followed."""

    __slots__ = ("gap",)

    def __init__(self, gap: bool = True):
        self.gap = gap

    def feed(self, text: str) -> str:
        out = []
        for char in text:
            kind, letters = fold_char(char)
            if kind == LETTER:
                out.append(letters)
                self.gap = False
            elif kind == SPACE and not self.gap:
                out.append(BREAK)
                self.gap = True
        return "".join(out)


def fold(text: str) -> str:
    """The folded text, starting with a word break."""
    return BREAK + Folder().feed(text)


def words(text: str) -> list[str]:
    """The folded words of a text."""
    return fold(text).split()


def phrase_patterns(phrase: str) -> list[str]:
    """What the watch looks for to find `phrase` however it is spaced: its folded pieces
    with each gap between them written or not ("J.K. Rowling": " jk rowiing",
    " j k rowiing", " jkrowiing", ...). Gaps beyond the fifth stay as written."""
    pieces = _pieces(phrase)
    if not pieces:
        return []
    loose = min(len(pieces) - 1, 5)
    patterns = []
    for mask in range(1 << loose):
        out = [pieces[0]]
        for i, piece in enumerate(pieces[1:]):
            spaced = i >= loose or mask >> i & 1
            out.append((BREAK if spaced else "") + piece)
        patterns.append(BREAK + "".join(out))
    return patterns


SPELLED_PIECES = 4  # a phrase of more pieces is looked for spelled out whole only


def spelled_patterns(phrase: str) -> list[str]:
    """What the watch looks for to find `phrase` spelled out letter by letter, in some of its
    words or all ("R o w l i n g", "H, a, r, r, y", a list of letters in JSON): each of
    `phrase_patterns`' forms with some of its words' letters apart ("J.K. R o w l i n g":
    " jk r o w i i n g"). Spelled letters are words of one letter, as the fold reads them."""
    out: dict[str, None] = {}
    plain = phrase_patterns(phrase)
    for pattern in plain:
        words = pattern.split()
        spellable = [i for i, word in enumerate(words) if len(word) > 1]
        if len(words) > SPELLED_PIECES:
            choices = [set(spellable)]
        else:
            choices = [
                {i for bit, i in enumerate(spellable) if mask >> bit & 1}
                for mask in range(1, 1 << len(spellable))
            ]
        for chosen in choices:
            spelled = (BREAK.join(w) if i in chosen else w for i, w in enumerate(words))
            out[BREAK + BREAK.join(spelled)] = None
    return [pattern for pattern in out if pattern not in plain]


def _pieces(phrase: str) -> list[str]:
    """The runs of letters of a phrase, split at every joiner and break."""
    pieces, current = [], []
    for char in phrase:
        kind, letters = fold_char(char)
        if kind == LETTER:
            current.append(letters)
        elif kind in (JOIN, SPACE) and current:
            pieces.append("".join(current))
            current = []
    if current:
        pieces.append("".join(current))
    return pieces
