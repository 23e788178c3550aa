"""How a text reads, letter by letter: the fold that the answer watch and the name screen share.

A reader reads "Hаrry" (Cyrillic а), "Ｈａｒｒｙ", "H4rry", "Har-ry" and "harry" as one word. Each
character folds to letters (compatibility forms, Unicode TR39 confusable skeletons through
ICU, transliteration of other scripts through anyascii, case, leetspeak digits), to nothing
inside a word (joiners: "-", ".", "'"; invisible characters), or to a word break. The folded
text is lower-case ASCII letters and digits with one space at each word break, and begins
with a space: a name is matched from the start of a word.

A joiner, a digit and a leetspeak sign read two ways: "Har-ry" and "H4rry" are one word, but
"Mr.Hamill", "@Hamill" and "Brando1924" hold the words "hamill" and "brando". The answer watch
reads both (`mark`, `readings`): the marked fold keeps such a character as a mark ("-" for
every joiner but an apostrophe, which only joins; the digit or sign itself), and a run of
marks reads as its letters (a joiner as nothing) or as one word break, the whole run one way:
"1305" is "ieos" or a break, never "ieo" and a break.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

BREAK = " "
# Inside a word these join its letters ("Har-ry", "J.K.", "Potter's", "Rowl*ng").
JOINERS = frozenset("-\u2010\u2011\u00ad._\u00b7*'\u2019`")
# Joiners that never break a word: "don't", "we'll" and "Rowling's" are one word each.
APOSTROPHES = frozenset("'\u2019`")
# Digits and signs read as letters inside a name ("H4rry P0tt3r", "Row1ing", "$teve",
# "Row|ing", "Pott€r", "Harr¥"). Each also reads as a word break ("Brando1924").
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
LEET_SIGNS = {"@": "a", "$": "s", "|": "i", "+": "t", "€": "e", "¥": "y"}
# "!" reads as an "i" only with a letter after it ("Ham!ll", "P!nk"): ending a word it is the
# exclamation it looks like ("Thanks, Al!" holds no "Ali").
BANG = "!"
JOIN_MARK = "-"
# Before a capital that follows a small letter ("iLoveHarryPotter", "MrMarkHamill"), or that
# begins a token with no capital after it ("Harry" or "H" after "iLove"): a word may begin
# there, read as RISE, or the letters join. Only a name of two words or more, each begun at a
# rise, of RISE_LETTERS letters, one word of it rarer than RISE_ZIPF, is looked for there
# (`rise_patterns`): "McQueen" holds no "Queen", "HotPink" no "Pink", "TOTALGREEN" no "Al
# Green", "callThePolice" no "The Police", "#FindTheCure" no "The Cure" (wordfreq's Zipf:
# "police" 5.3, "cure" 4.3; "potter" 4.1 and "swift" 4.2 are rarer).
RISE = "^"
RISE_LETTERS = 7
RISE_ZIPF = 4.3
# What each mark reads as inside a word (the other reading is a word break).
MARK_LETTERS = {
    JOIN_MARK: "",
    **{d: d.translate(LEET) for d in "0123456789"},
    **LEET_SIGNS,
    BANG: "i",
}
# A token with more runs of marks than this reads as all of them letters, or all breaks.
MIXED_RUNS = 8
_RUNS = re.compile("[" + re.escape("".join(MARK_LETTERS)) + "]+")
# "l" and "i" (and "1", "I", "|") read alike in many fonts: one letter for all of them.
SAME = str.maketrans({"l": "i"})
LETTER, JOIN, SPACE, NOTHING, EITHER = 0, 1, 2, 3, 4  # EITHER: a digit or sign, its mark
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
    """(kind, letters) of one character: LETTER with its folded letters, EITHER with its mark
    (a digit or a leetspeak sign: a letter or a break), JOIN, SPACE, or NOTHING (renders as
    nothing: zero-width characters, direction marks)."""
    if char.isascii():
        if char.isalpha():
            return LETTER, char.lower().translate(SAME)
        if char.isdigit() or char in LEET_SIGNS or char == BANG:
            return EITHER, char
        return (JOIN, "") if char in JOINERS else (SPACE, "")
    if char in JOINERS:
        return JOIN, ""
    if char in LEET_SIGNS:
        return EITHER, char
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
    """A character that is several under compatibility folding ("ﬁ", "½"), or one that folds
    to another ("４"): its letters."""
    kinds = [fold_char(c) for c in text]
    if len(kinds) == 1:
        return kinds[0]
    letters = "".join(MARK_LETTERS[s] if k == EITHER else s for k, s in kinds)
    if letters:
        return LETTER, letters
    return min((k for k, _ in kinds), default=NOTHING), ""


class Folder:
    """Folds a text that arrives in pieces (a stream of tokens) exactly as `fold` folds it
    whole. `gap` is True once a word break has been written and no letter has followed."""

    __slots__ = ("gap", "bang")

    def __init__(self, gap: bool = True):
        self.gap = gap
        self.bang = False  # a "!" read last, after a letter: what it is waits for the next

    def feed(self, text: str) -> str:
        out = []
        for char in text:
            kind, letters = fold_char(char)
            if self.bang and kind in (JOIN, NOTHING):
                continue
            if self.bang:  # a "!" after a letter: an "i" if a letter follows, else a break
                self.bang = False
                bang_letter = kind in (LETTER, EITHER) and letters != BANG
                out.append(MARK_LETTERS[BANG] if bang_letter else BREAK)
                self.gap = not bang_letter
            if letters == BANG:
                if self.gap:
                    kind = SPACE
                else:
                    self.bang = True
                    continue
            if kind == EITHER:
                kind, letters = LETTER, MARK_LETTERS[letters]
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


def mark(text: str) -> str:
    """The marked fold of a text: letters, a word break for each run of breaks, a mark for
    each joiner ("-"), digit and leetspeak sign ("Mr.Hamill": "mr-hamiii"), and a RISE
    before a capital after a small letter, or first in the text ("MrHamill": "mr^hamiii").
    Unlike `fold`, it does not depend on what came before: the reader of the marks keeps
    that (a RISE after a break reads as nothing)."""
    out: list[str] = []
    small = None  # what came before the text is unknown: a capital first may be a rise
    for at, char in enumerate(text):
        kind, letters = fold_char(char)
        first = small is None and (at + 1 == len(text) or text[at + 1].islower())
        if kind == LETTER and char.isupper() and (small or first):
            out.append(RISE)
        small = kind == LETTER and char.islower() or kind == NOTHING and small
        if kind == SPACE:
            if not out or out[-1] != BREAK:
                out.append(BREAK)
        elif kind == JOIN:
            if char not in APOSTROPHES:
                out.append(JOIN_MARK)
        elif kind != NOTHING:
            out.append(letters)
    return "".join(out)


# How a reading stands toward a run of marks: outside one, or inside one read as letters, or
# as a break (the rest of the run is read the same way); at a word's start, as letters with
# no letter of the text's own yet (leetspeak needs one: "1305" is no "Leos", "41 Gore" is Al
# Gore; no name is matched until a real letter comes), or as itself (a word of digits alone
# reads as its digits: "50 Cent"); or as letters whose last was a "!", which a letter must
# follow (BANGED: a break ends that reading).
OUTSIDE, AS_LETTERS, AS_BREAK, UNSURE, RAW, BANGED = range(6)
RAW_LETTERS = {mark: "" if mark == JOIN_MARK else mark for mark in MARK_LETTERS if mark != BANG}


@lru_cache(maxsize=1024)
def moves(gap: bool, run: int, symbol: str) -> tuple[tuple[str, int], ...]:
    """Each way a reading goes on with one symbol of marked text, after a break (`gap`) or
    not, inside a run of marks read one way (`run`) or none: what the symbol reads as, and
    the run after it. A letter or a break reads as itself; a mark as its letter (a joiner as
    nothing), as itself at a word's start, or as a break, as the run it belongs to has been
    read. Letters read from marks alone stay UNSURE, across breaks, until a real letter. A
    "!" reads as a letter only after one, and only if a letter follows (BANGED)."""
    if symbol == RISE:
        if gap or run != OUTSIDE:
            return (("", run),)
        return (("", OUTSIDE), (RISE, OUTSIDE))
    letter = MARK_LETTERS.get(symbol)
    if letter is None:
        if symbol != BREAK:
            return ((symbol, OUTSIDE),)
        if run == BANGED:
            return ()
        return ((BREAK, UNSURE if run == UNSURE else OUTSIDE),)
    out: tuple[tuple[str, int], ...] = ()
    if run in (OUTSIDE, AS_LETTERS, UNSURE, BANGED):
        way = run if run != OUTSIDE else UNSURE if gap else AS_LETTERS
        if symbol == BANG and way != UNSURE:
            out += ((letter, BANGED),)
        elif symbol != BANG:
            out += ((letter, way),)
    if (run == RAW or run == OUTSIDE and gap) and symbol in RAW_LETTERS:
        out += ((RAW_LETTERS[symbol], RAW),)
    if run in (OUTSIDE, AS_BREAK):
        out += ((BREAK, AS_BREAK),)
    return out


def step(text: str, gap: bool, run: int, symbol: str) -> list[tuple[str, bool, int]]:
    """`moves` on a reading written out: its text, whether it ends at a break, its run."""
    out = []
    for choice, way in moves(gap, run, symbol):
        if choice == BREAK:
            out.append((text if gap else text + BREAK, True, way))
        else:
            out.append((text + choice, gap and not choice, way))
    return out


def _budgeted(marked: str) -> tuple[str, bool]:
    """A marked text within the budget of readings, and whether its runs of marks may be
    read in every mix: runs and rises count together against MIXED_RUNS, and past it the
    rises read as nothing."""
    if len(_RUNS.findall(marked)) + marked.count(RISE) <= MIXED_RUNS:
        return marked, True
    return marked.replace(RISE, ""), False


@lru_cache(maxsize=65536)
def readings(marked: str, gap: bool, run: int = OUTSIDE) -> frozenset[tuple[str, bool]]:
    """The folded texts a marked text reads as after a word break (`gap`) or a letter, and
    inside a run of marks read one way (`run`) or none, each with whether it ends at a
    break: every run of marks read both ways (`step`). A text of more than `MIXED_RUNS` runs
    of marks reads with all of them letters, or all breaks."""
    marked, mixed = _budgeted(marked)
    out: set[tuple[str, bool]] = set()
    for excluded in [()] if mixed else [(AS_BREAK,), (AS_LETTERS, UNSURE, RAW, BANGED)]:
        paths = {("", gap, run)}
        for symbol in marked:
            paths = {
                after for path in paths for after in step(*path, symbol) if after[2] not in excluded
            }
        out |= {(text, at_break) for text, at_break, _ in paths}
    return frozenset(out)


@lru_cache(maxsize=65536)
def sure_readings(marked: str, gap: bool) -> frozenset[tuple[str, int]]:
    """The readings of a marked text that begins inside an UNSURE run (letters read from
    marks alone), each with how many of its symbols come before its first real letter: a
    name it completes there is no name (`moves`)."""
    paths = {("", gap, UNSURE, -1)}
    marked, _ = _budgeted(marked)
    for symbol in marked:
        grown = set()
        for text, at_break, run, first in paths:
            for after_text, after_break, after_run in step(text, at_break, run, symbol):
                real = first < 0 and run == UNSURE and after_run == OUTSIDE and symbol != BREAK
                grown.add((after_text, after_break, after_run, len(text) if real else first))
        paths = grown
    return frozenset((text, first if first >= 0 else len(text) + 1) for text, _, _, first in paths)


def letter_count(pattern: str) -> int:
    """How many letters a pattern writes (its breaks and rises not counted)."""
    return len(pattern) - pattern.count(BREAK) - pattern.count(RISE)


def rise_patterns(phrase: str) -> list[str]:
    """`phrase` in camel case ("iLoveHarryPotter": "^harry^potter"; initials together:
    "^jk^rowiing"), where it is a name of two words or more that camel case would not write
    by chance (RISE)."""
    from wordfreq import zipf_frequency

    words = [w for w in re.split(r"[^\w]+|_", phrase) if w]
    if len(words) < 2 or not any(zipf_frequency(w, "en") < RISE_ZIPF for w in words):
        return []
    out = []
    for pieces in sorted({tuple(_pieces(phrase, way)) for way in (LETTERS, RAW_DIGITS)}):
        written = "".join(
            piece if i and len(piece) == len(pieces[i - 1]) == 1 else RISE + piece
            for i, piece in enumerate(pieces)
        )
        if letter_count(written) >= RISE_LETTERS:
            out.append(written)
    return out


def words(text: str) -> list[str]:
    """The folded words of a text."""
    return fold(text).split()


def phrase_patterns(phrase: str) -> list[str]:
    """What the watch looks for to find `phrase` however it is spaced: its folded pieces
    with each gap between them written or not ("J.K. Rowling": " jk rowiing",
    " j k rowiing", " jkrowiing", ...). Gaps beyond the fifth stay as written."""
    patterns: dict[str, None] = {}
    forms = {tuple(_pieces(phrase, way)) for way in (LETTERS, RAW_DIGITS, SIGNS_BREAK)}
    for pieces in forms:
        loose = min(len(pieces) - 1, 5)
        for mask in range(1 << loose) if pieces else ():
            out = [pieces[0]]
            for i, piece in enumerate(pieces[1:]):
                spaced = i >= loose or mask >> i & 1
                out.append((BREAK if spaced else "") + piece)
            patterns[BREAK + "".join(out)] = None
    return list(patterns)


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


# How `_pieces` reads a phrase's digits and signs: as letters; a piece of digits alone as its
# digits ("50 Cent": "50", "cent"; "Blink-182"); a sign as a break ("Florence + the Machine",
# "A$AP": the registered name may be written either way).
LETTERS, RAW_DIGITS, SIGNS_BREAK = range(3)


def _pieces(phrase: str, way: int = LETTERS) -> list[str]:
    """The runs of letters of a phrase, split at every joiner and break, its digits and
    signs read `way`."""
    pieces: list[str] = []
    current: list[tuple[int, str]] = []

    def close() -> None:
        if current:
            alone = way == RAW_DIGITS and all(kind == EITHER for kind, _ in current)
            pieces.append(
                "".join(s if alone or kind != EITHER else MARK_LETTERS[s] for kind, s in current)
            )
            current.clear()

    for at, char in enumerate(phrase):
        kind, letters = fold_char(char)
        if kind == EITHER and way == SIGNS_BREAK and letters in LEET_SIGNS:
            kind = SPACE
        if letters == BANG and not (way != SIGNS_BREAK and current and _letter_at(phrase, at + 1)):
            kind = SPACE
        if kind in (LETTER, EITHER):
            current.append((kind, letters))
        elif kind in (JOIN, SPACE):
            close()
    close()
    return pieces


def _letter_at(text: str, at: int) -> bool:
    """Whether a letter, digit or sign other than "!" stands at `at` (what makes a "!" an "i")."""
    if at >= len(text):
        return False
    kind, letters = fold_char(text[at])
    return kind == LETTER or kind == EITHER and letters != BANG
