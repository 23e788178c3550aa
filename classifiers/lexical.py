"""Fuzzy lexical evidence: aliases and keywords found despite typos, case and punctuation."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from functools import lru_cache

from logits_processors.fold import words as folded_words

MIN_FUZZY_LEN = 5  # shorter words must match exactly: "pot" is not "hot"
WORD = re.compile(r"[^\W_]+", re.UNICODE)
FOLDED = "\x01"  # marks a phrase's folded form in the matcher's keys
STOPWORDS = {"the", "of", "and", "a", "an", "de", "van", "von", "in", "on", "at", "to", "for"}


# A word spelled out letter by letter ("K-i-s-s-i-n-g-e-r", "K i s s i n g e r", "K . i . s"):
# four letters or more, each followed by the same separator, one punctuation mark with
# spaces around it or one space ("H-a-r-r-y P-o-t-t-e-r" is two words).
_SPELLED = re.compile(r"(?<!\w)[^\W\d_](\s*[^\w\s]\s*|\s)(?:[^\W\d_]\1){2,}[^\W\d_](?!\w)")
# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): they render as
# nothing, and a reader reads the word around them whole. Also the blank braille pattern.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_DROP = {c: None for lo, hi in _IGNORABLE for c in range(lo, hi + 1)}
# Tag characters mirror ASCII (U+E0020-E007E): a model may read text hidden in them, so
# they are screened as the ASCII they stand for.
_DROP.update({c: c - 0xE0000 for c in range(0xE0020, 0xE007F)})


def readable(text: str) -> str:
    """The text as a reader (and the model) reads it: compatibility forms folded (NFKC:
    full-width letters, ligatures), what renders as nothing removed (zero-width space and
    joiners, soft hyphen, direction marks, variation selectors: "Kiss\u200binger"), tag
    characters read as the ASCII they mirror, and a word spelled out letter by letter
    joined again."""
    text = unicodedata.normalize("NFKC", text).translate(_DROP)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPELLED.sub(lambda m: m.group().replace(m.group(1), ""), text)


def normalize(text: str) -> list[str]:
    """Lower-case words with accents folded: 'Hogwarts,' and 'hogwárts' give 'hogwarts'."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return WORD.findall(folded)


def disguised_words(text: str) -> list[str]:
    """The words a reader reads differently than they are written, as they read: look-alike
    letters of another script ("Hаrry", Cyrillic а), leetspeak ("H4rry"), punctuation inside a
    word ("Har-ry"), and a word of another script transliterated ("Шакира": "shakira").
    Words written plainly add nothing (`normalize` has them)."""
    from anyascii import anyascii

    out: list[str] = []
    for token in text.split():
        plain = normalize(token)
        letters = [c for c in token if c.isalpha()]
        if letters and not any(c.isascii() for c in letters):
            forms = normalize(anyascii(token))  # a word of another script
        else:  # a "!" between letters reads as an "i" ("H!rry") or as the break it is
            forms = folded_words(token) + folded_words(token.replace("!", " "))
        out += [w for w in dict.fromkeys(forms) if w not in plain]
    return out


@lru_cache(maxsize=256)
def text_words(text: str) -> tuple[str, ...]:
    """A text's words as matchers read them, plain then disguised: read once for the several
    matchers one screen asks about the same text."""
    return (*normalize(text), *disguised_words(text))


def deletes(word: str) -> set[str]:
    """The word and every form with one character removed (SymSpell's neighbourhood)."""
    return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}


class LexicalMatcher:
    """Phrase -> target index with edit-distance tolerance per word, O(words) per query.

    Two words match when their one-deletion neighbourhoods meet: that covers one insertion,
    deletion or substitution, and a transposition. A phrase fires when every significant
    word of it is present in the text.
    """

    def __init__(self, fuzzy_from: int = MIN_FUZZY_LEN, shortest: int = 4) -> None:
        self.fuzzy_from = fuzzy_from  # words this long or longer match with one edit
        self.shortest = shortest  # a phrase of one word shorter than this is not matched
        self._exact: dict[str, set[str]] = defaultdict(set)  # short word -> phrase keys
        self._fuzzy: dict[str, set[str]] = defaultdict(set)  # deletion form -> words
        self._phrases: dict[str, tuple[str, tuple[str, ...]]] = {}  # key -> (target, words)
        self._by_target: dict[str, list[str]] = defaultdict(list)

    def add(self, target_id: str, phrases: list[str]) -> None:
        self.remove(target_id)
        for phrase in dict.fromkeys(phrases):  # a keyword equal to the name is one phrase
            plain = self._add(target_id, phrase, normalize(phrase), "")
            # As a disguise reads once folded ("Row1ing" is "rowiing", as is "Rowling"); not
            # for a phrase with digits, whose folded words are everyday ones ("50 Cent": "so").
            if plain is not None and not any(c.isdigit() for c in phrase):
                self._add(target_id, phrase, folded_words(phrase), FOLDED, plain)

    def _add(
        self,
        target_id: str,
        phrase: str,
        normalized: list[str],
        mark: str,
        unless: tuple[str, ...] | None = None,
    ) -> tuple[str, ...] | None:
        """Register one form of a phrase (not again if it is `unless`); its words, or None
        when the phrase is too short to match on its own."""
        words = tuple(w for w in normalized if w not in STOPWORDS)
        if not words or (len(words) == 1 and len(words[0]) < self.shortest):
            return None  # a lone short word ("HP") would fire on too much
        if words == unless:
            return words
        key = f"{target_id}\x00{phrase}{mark}"
        self._phrases[key] = (target_id, words)
        self._by_target[target_id].append(key)
        for word in words:
            if len(word) >= self.fuzzy_from:
                for form in deletes(word):
                    self._fuzzy[form].add(word)
            self._exact[word].add(key)
        return words

    def remove(self, target_id: str) -> None:
        for key in self._by_target.pop(target_id, []):
            _, words = self._phrases.pop(key)
            for word in words:
                self._exact[word].discard(key)
        # Deletion forms are shared between targets; stale ones only cost a lookup.

    def _present(self, text_words: list[str]) -> set[str]:
        present = set(text_words)
        for word in text_words:
            if len(word) >= self.fuzzy_from - 1:
                for form in deletes(word):
                    present |= self._fuzzy.get(form, set())
        return present

    def match(self, text: str) -> dict[str, str]:
        """Target id -> the phrase that fired, for every target whose phrase is present,
        plainly or disguised (`disguised_words`)."""
        present = self._present(list(text_words(text)))
        candidates = {key for word in present for key in self._exact.get(word, ())}
        hits: dict[str, str] = {}
        for key in sorted(candidates):
            target_id, words = self._phrases[key]
            if target_id not in hits and all(w in present for w in words):
                hits[target_id] = key.split("\x00", 1)[1].removesuffix(FOLDED)
        return hits
