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


# The word before a surname is another person's first name ("Nelson Rockefeller", "Hailey
# Bieber") when it is capitalised, is neither a title or office ("Secretary Kissinger":
# nameparser's list) nor the target's own name or initial ("H. Kissinger"), and is either
# uncommon (Zipf below 5 keeps "Nelson", "Hailey", "Donny" and drops "When", "The", "After")
# or, inside a sentence, a common word that is a given name in the US census ("Who is John
# Smith?", "Will Smith's films"). Capitals at a sentence start or in an all-caps word say
# nothing of a common word ("Did", "July"). Below COMMONEST, a word is a function word even
# when the census lists it ("In", "The").
FIRST_NAME_ZIPF = 5.0
COMMONEST = 6.5
_LOOK_BACK = 24  # characters before a word that tell whether a sentence starts with it


@lru_cache(maxsize=1)
def _titles() -> frozenset[str]:
    """Honorifics and offices that stand before a name (nameparser's list, ours)."""
    from nameparser.config import CONSTANTS

    words = (normalize(title) for title in CONSTANTS.titles)
    return frozenset(w[0] for w in words if len(w) == 1) | TITLES


@lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """First names of the 1990 US census (the `names` package's data)."""
    from importlib import resources

    folder = resources.files("names")
    lines = [
        line
        for sex in ("male", "female")
        for line in folder.joinpath(f"dist.{sex}.first").read_text().splitlines()
    ]
    return frozenset(line.split()[0].casefold() for line in lines if line.strip())


def own_words(names: list[str]) -> frozenset[str]:
    """The words of a target's names and aliases, with each given name's formal and pet
    forms, one step away in the `nicknames` package's table: "Leonard Kravitz" is Lenny
    Kravitz and "Robert Saget" Bob Saget, not relatives who share the surname. Not two
    steps ("Jay", a pet form of "Jalen", one of "Lenny"): each step names more strangers.
    The table is loose ("Chris" is also "Christina"): a stranger it makes the target's own
    is refused with the target, which errs on the side of forgetting."""
    words = {w for name in names for w in normalize(name)}
    return frozenset(words | {v for name in names for v in _pet_forms(_given(name))})


def _given(name: str) -> str:
    """A name's given name: its first word that is no title, in a name of two words or more
    ("Harry" of "Prince Harry, Duke of Sussex"; none in "Beyoncé"). Not a surname: "John"
    of Elton John is no "Jack"."""
    words = normalize(name.split(",")[0])
    given = [w for w in words if w not in _titles()]
    return given[0] if len(words) > 1 and given else ""


@lru_cache(maxsize=4096)
def _pet_forms(word: str) -> frozenset[str]:
    if len(word) < MIN_PART_CHARS:
        return frozenset()
    namer = _nicknamer()
    forms = namer.canonicals_of(word) | namer.nicknames_of(word)  # one step, not siblings
    return frozenset(f for f in forms if len(f) >= MIN_PART_CHARS) - {word}


@lru_cache(maxsize=1)
def _nicknamer():
    from nicknames import NickNamer

    return NickNamer()


def someone_else(text: str, part: str, own: set[str], vouching: bool = False) -> bool:
    """Whether every occurrence of the name part `part` in `text` names another person:
    a relative with the same surname ("Nelson Rockefeller", "Hailey Bieber", "Donny Osmond")
    when the target is John D. Rockefeller, Justin Bieber or Marie Osmond. `own` holds the
    target's own name words. Only the capitalised words joined to the part by spaces count
    ("Nixon, Kissinger" and "China. Kissinger" name him). A run of two or more is the
    target's full or birth name ("Cynthia Ann Crawford", "Samuel Pack Elliott"), not a
    relative, and so is a run holding a title or a word of the target's own name. A part
    found only with a typo is not second-guessed.

    A `vouching` part (a common first name or surname that only lets the target's
    classifier speak) names someone else also when a capitalised word that is not the
    target's follows it ("Harry Potter", "Harry Styles", "Queen Elizabeth II" for Prince
    Harry or an Elizabeth Brown), or when a title alone precedes it ("Mrs Smith": no one in
    particular)."""
    found = list(WORD.finditer(text))
    folded = ["".join(normalize(m.group())) for m in found]
    theirs = own | {w[0] for w in own} | _titles()
    at = [i for i, w in enumerate(folded) if w == part]
    if not at:
        return False
    for i in at:
        if vouching and _named_on(text, found, folded, i, own):
            continue
        run = _run_before(text, found, i)
        if vouching and len(run) == 1 and folded[run[0]] in _titles():
            continue
        if len(run) != 1 or folded[run[0]] in theirs:
            return False
        if not _first_name(text, found[run[0]], folded[run[0]]):
            return False
    return True


def _named_on(text: str, found: list[re.Match], folded: list[str], i: int, own: set[str]) -> bool:
    """Whether word i is followed, across one space, by a capitalised word (or a Roman
    numeral) that is not one of the target's own: the name goes on as someone else's."""
    if i + 1 >= len(found) or text[found[i].end() : found[i + 1].start()] != " ":
        return False
    word = found[i + 1].group()
    return word[:1].isupper() and folded[i + 1] not in own


def _run_before(text: str, found: list[re.Match], i: int) -> list[int]:
    """The capitalised words right before word i, each joined to the next by spaces alone
    (an initial by ". "), nearest first; at most two (whether there is one is the question:
    reading further would make a shouted text cost its length at every occurrence)."""
    run = []
    for j in range(i - 1, max(i - 3, -1), -1):
        word, gap = found[j].group(), text[found[j].end() : found[j + 1].start()]
        joined = (gap != "" and not gap.strip(" ")) or (gap == ". " and len(word) == 1)
        if not (joined and word[:1].isupper()):
            break
        run.append(j)
    return run


def _first_name(text: str, match: re.Match, word: str) -> bool:
    if len(word) == 1:  # an initial ("N. Rockefeller"), not an article ("A Rockefeller")
        return text[match.end() : match.end() + 1] == "."
    zipf = _zipf(word)
    if zipf < FIRST_NAME_ZIPF:
        return True
    shouted = len(match.group()) > 1 and match.group().isupper()
    opens = shouted or _opens(text, match.start())
    return not opens and zipf < COMMONEST and word in given_names()


def _opens(text: str, start: int) -> bool:
    """Whether a sentence, list item, quote or bracket opens at `start`: what precedes it
    is nothing, or ends in other punctuation than a comma."""
    before = text[max(0, start - _LOOK_BACK) : start].rstrip(" \t")
    if not before:
        return start <= _LOOK_BACK
    return not (before[-1].isalnum() or before[-1] == ",")
