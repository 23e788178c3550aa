"""A target's name parts: which words of its name point at it without the rest of the name.

"Springsteen" alone names Bruce Springsteen; "King" alone does not name Stephen King, nor
"Swift" Taylor Swift. How often a word appears in ordinary English text (wordfreq's Zipf
scale: 3 is once per million words, "king" is 5.2, "springsteen" 3.2) tells the two apart
without a list of names.
"""

from __future__ import annotations

import re
from functools import lru_cache

from wordfreq import zipf_frequency

from classifiers.lexical import STOPWORDS, WORD, normalize

# A part rarer than this is a name on its own. Set on RWKU targets 1-50 (guard-bench rwku):
# 3.6 keeps "Seagal", "Kissinger", "Beyoncé" (3.5), "Springsteen"; it drops "Norris" (3.6),
# "Bieber" (3.7), "Cuban", "Hilton", "Swift", "Lee".
DISTINCT_ZIPF = 3.6
# Titles and generic words in a registered name ("Prince Harry, Duke of Sussex") point at
# nobody: they neither name the target nor let the classifier speak for it.
TITLES = {"prince", "princess", "duke", "duchess", "king", "queen", "lord", "lady", "sir"}
TITLES |= {"saint", "dr", "mr", "mrs", "ms"}
SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
MIN_PART_CHARS = 3
VOUCH_ZIPF = 5.0
# A name part alone is matched exactly below this length: one edit away from "Miley" is
# "mile" ("The Green Mile"), from "Reba" "Rebar".
FUZZY_PART_CHARS = 7


def name_forms(names: list[str]) -> list[str]:
    """Each name, then each comma-separated part of it of two words or more: "Prince Harry,
    Duke of Sussex" is also "Prince Harry" and "Duke of Sussex", the form most questions
    use. A title may have named others before ("Duke of Sussex"): a question about them is
    restricted too, which errs on the forgetting side. A one-word part ("Meghan" of "Meghan,
    Duchess of Sussex") is left to `name_parts`."""
    forms = dict.fromkeys(names)
    for name in names:
        parts = [" ".join(p.split()) for p in name.split(",")]
        if len(parts) > 1:
            forms.update(dict.fromkeys(p for p in parts if len(p.split()) >= 2))
    return list(forms)


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    return zipf_frequency(word, "en")


def name_parts(names: list[str]) -> tuple[list[str], list[str]]:
    """(distinct, surnames): the words of `names` that name the target alone, and the last
    words of its names that do not ("Swift"): those let a classifier hit count.

    A title after a comma is not the name ("Meghan, Duchess of Sussex" is Meghan). Words
    shorter than MIN_PART_CHARS, stop words and leading titles are neither.
    """
    distinct: dict[str, None] = {}
    surnames: dict[str, None] = {}
    for name in names:
        words = [w for w in normalize(name.split(",")[0]) if w not in SUFFIXES]
        # A title leads a name ("King Charles"); last, it is a surname ("Stephen King").
        words = [
            w
            for i, w in enumerate(words)
            if len(w) >= MIN_PART_CHARS
            and w not in STOPWORDS
            and (w not in TITLES or i == len(words) - 1)
        ]
        distinct.update(dict.fromkeys(w for w in words if _zipf(w) < DISTINCT_ZIPF))
        # The surname vouches for the classifier unless it is an everyday word ("White",
        # "West", "King": MMLU prompts hold them), then the first name does ("Kanye").
        vouching = [w for w in (words[-1:] + words[:1]) if _zipf(w) < VOUCH_ZIPF]
        if vouching and vouching[0] not in distinct:
            surnames[vouching[0]] = None
    return list(distinct), [w for w in surnames if w not in distinct]


# The word before a surname is another person's first name when it is capitalised, no
# title ("Secretary Kissinger", "Professor Kissinger" name him) and, at the start of a
# sentence, no everyday word ("When Rockefeller...", "The Hamill..."): Zipf 5 keeps "Nelson",
# "Hailey", "Donny", "Brandon" and drops "When", "The", "What", "After". Inside a sentence a
# capital marks a name however common the word ("Who is John Smith?", "Will Smith's films").
FIRST_NAME_ZIPF = 5.0
# A clause ends before a word that opens a sentence: its capital says nothing there.
_OPENS = re.compile(r"(?:^|[.!?:;\n\"\u201c(])\W*$")


@lru_cache(maxsize=1)
def _titles() -> frozenset[str]:
    """Honorifics and offices that stand before a name (nameparser's list, ours)."""
    from nameparser.config import CONSTANTS

    words = (normalize(title) for title in CONSTANTS.titles)
    return frozenset(w[0] for w in words if len(w) == 1) | TITLES


def someone_else(text: str, part: str, own: set[str]) -> bool:
    """Whether every occurrence of the name part `part` in `text` names another person:
    a relative with the same surname ("Nelson Rockefeller", "Hailey Bieber", "Donny Osmond")
    when the target is John D. Rockefeller, Justin Bieber or Marie Osmond. `own` holds the
    target's own name words. A longer run of names is the target's full or birth name
    ("Cynthia Ann Crawford", "Samuel Pack Elliott"), not a relative. A part found only with
    a typo is not second-guessed."""
    found = list(WORD.finditer(text))
    folded = ["".join(normalize(m.group())) for m in found]
    # The target's own initials are its own ("H. Kissinger", "J. D. Rockefeller").
    not_first = own | {w[0] for w in own} | _titles()

    def first_name(i: int) -> bool:
        if i < 0 or not found[i].group()[:1].isupper() or folded[i] in not_first:
            return False
        opens = bool(_OPENS.search(text[: found[i].start()]))
        return not opens or _zipf(folded[i]) < FIRST_NAME_ZIPF

    at = [i for i, w in enumerate(folded) if w == part]
    return bool(at) and all(first_name(i - 1) and not first_name(i - 2) for i in at)
