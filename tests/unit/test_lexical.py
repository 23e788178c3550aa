"""LexicalMatcher: phrases found despite one typo per long word, case, accents and punctuation."""

import pytest

from classifiers.lexical import MIN_FUZZY_LEN, LexicalMatcher, deletes, normalize, readable

PHRASES = ["Harry Potter", "Hogwarts", "Ron Weasley", "Order of the Phoenix", "Oslo", "HP"]


@pytest.fixture
def matcher() -> LexicalMatcher:
    m = LexicalMatcher()
    m.add("hp", PHRASES)
    return m


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hogwarts,", ["hogwarts"]),
        ("hogwárts", ["hogwarts"]),
        ("HOGWÁRTS!", ["hogwarts"]),
        ("Ærø Straße", ["ærø", "strasse"]),  # casefold; æ and ø have no combining mark
        ("Crème-brûlée", ["creme", "brulee"]),
        ("snake_case words", ["snake", "case", "words"]),
        ("ﬁne 42", ["fine", "42"]),
        ("", []),
        ("  ... !? ", []),
    ],
)
def test_normalize(text, words):
    assert normalize(text) == words


@pytest.mark.parametrize(
    ("word", "forms"),
    [
        ("abc", {"abc", "bc", "ac", "ab"}),
        ("aab", {"aab", "ab", "aa"}),
        ("a", {"a", ""}),
        ("", {""}),
    ],
)
def test_deletes(word, forms):
    assert deletes(word) == forms


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        # exact, case, accents, punctuation, word order
        ("tell me about Harry Potter", "Harry Potter"),
        ("HARRY POTTER", "Harry Potter"),
        ("Potter, Harry.", "Harry Potter"),
        ("harry-potter", "Harry Potter"),
        ("HOGWÁRTS!", "Hogwarts"),
        ("hogwarts_school", "Hogwarts"),
        # one edit on a word of length >= MIN_FUZZY_LEN
        ("harry poter", "Harry Potter"),  # deletion
        ("hary potter", "Harry Potter"),
        ("harrry potter", "Harry Potter"),  # insertion
        ("hogwrts", "Hogwarts"),
        ("hogwartss", "Hogwarts"),
        ("hogwerts", "Hogwarts"),  # substitution
        ("hogwrats", "Hogwarts"),  # transposition
        ("harr potter", "Harry Potter"),  # a 4-letter text word may still match a 5-letter one
        # short phrase words need an exact match, long ones stay fuzzy
        ("ron weasly", "Ron Weasley"),
        ("RON weasley", "Ron Weasley"),
        ("oslo", "Oslo"),
        # skip words are not required
        ("the order of phoenix", "Order of the Phoenix"),
        ("phoenix order", "Order of the Phoenix"),
    ],
)
def test_matches(matcher, text, phrase):
    assert matcher.match(text) == {"hp": phrase}


@pytest.mark.parametrize(
    "text",
    [
        "hgwrts",  # two edits
        "hogwurtz",
        "har potter",  # "har" is too short for fuzzy lookup
        "harry",  # multi-word phrases need all their words
        "potter",
        "rob weasley",  # "ron" is short: exact only
        "ron",
        "olso",  # "oslo" is short: exact only
        "osloo",
        "hp",  # lone short phrase words are never registered
        "HP is great",
        "order",
        "",
        "an unrelated sentence about cooking",
    ],
)
def test_does_not_match(matcher, text):
    assert matcher.match(text) == {}


def test_min_fuzzy_len_is_the_boundary():
    m = LexicalMatcher()
    m.add("t", ["abcd", "vwxyz"])  # 4 letters: exact only; 5 letters: fuzzy
    assert len("vwxyz") == MIN_FUZZY_LEN
    assert m.match("abcd") == {"t": "abcd"}
    assert m.match("abd") == {}
    assert m.match("abcde") == {}
    assert m.match("vwxz") == {"t": "vwxyz"}
    assert m.match("vwxyzz") == {"t": "vwxyz"}


def test_several_targets_fire_independently():
    m = LexicalMatcher()
    m.add("hp", ["Harry Potter"])
    m.add("hh", ["Harry Houdini"])
    assert m.match("harry potter met harry houdini") == {
        "hp": "Harry Potter",
        "hh": "Harry Houdini",
    }
    assert m.match("harry houdni") == {"hh": "Harry Houdini"}


def test_one_phrase_per_target_is_reported():
    m = LexicalMatcher()
    m.add("hp", ["Harry Potter", "Hogwarts"])
    hits = m.match("harry potter at hogwarts")
    assert list(hits) == ["hp"]
    assert hits["hp"] in {"Harry Potter", "Hogwarts"}


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("harry potter", {}),
        ("harry poter", {}),
        ("harry houdini", {"hh": "Harry Houdini"}),
        ("hogwarts", {}),
    ],
)
def test_remove_stops_matches_and_keeps_other_targets(text, hits):
    m = LexicalMatcher()
    m.add("hp", ["Harry Potter", "Hogwarts"])
    m.add("hh", ["Harry Houdini"])
    m.remove("hp")
    m.remove("unknown")  # no-op
    assert m.match(text) == hits


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("hogwarts", {}),  # the old phrase is gone
        ("harry potter", {}),
        ("durmstrang", {"hp": "Durmstrang"}),  # the new one fires
        ("durmstang", {"hp": "Durmstrang"}),
    ],
)
def test_re_adding_a_target_replaces_its_phrases(text, hits):
    m = LexicalMatcher()
    m.add("hp", ["Harry Potter", "Hogwarts"])
    m.add("hp", ["Durmstrang"])
    assert m.match(text) == hits


@pytest.mark.parametrize(
    "phrases",
    [
        [],
        ["HP"],  # a lone short word
        ["the of and"],  # only skip words
        ["!!!"],
    ],
)
def test_phrases_with_nothing_significant_are_skipped(phrases):
    m = LexicalMatcher()
    m.add("t", phrases)
    for text in ["hp", "the of and", "!!!", "anything"]:
        assert m.match(text) == {}


def test_repeated_phrase_can_be_removed_and_re_added():
    matcher = LexicalMatcher()
    matcher.add("t", ["Harry Potter", "Harry Potter"])
    matcher.add("t", ["Harry Potter"])  # re-adding removes first: used to raise KeyError
    assert matcher.match("harry potter") == {"t": "Harry Potter"}
    matcher.remove("t")
    assert matcher.match("harry potter") == {}


@pytest.mark.parametrize(
    "text, read",
    [
        ("Kiss\u200binger and Spring\u00adsteen", "Kissinger and Springsteen"),
        ("\uff2b\uff49\uff53\uff53\uff49\uff4e\uff47\uff45\uff52", "Kissinger"),
        ("Who is K-i-s-s-i-n-g-e-r?", "Who is Kissinger?"),
        ("Who is K i s s i n g e r?", "Who is Kissinger?"),
        ("H-a-r-r-y P-o-t-t-e-r", "Harry Potter"),
        ("K/i/s/s/i/n/g/e/r, K . i . s . s", "Kissinger, Kiss"),
        ("K\ni\ns\ns", "Kiss"),
        # Variation selector, grapheme joiner, Hangul filler, blank braille: all invisible.
        ("Kiss\ufe0fin\u034fg\u3164e\u2800r", "Kissinger"),
        ("Who is \U000e004b\U000e0069\U000e0073\U000e0073?", "Who is Kiss?"),  # tag letters
        # Initials and abbreviations stay as they are.
        ("J. D. Rockefeller", "J. D. Rockefeller"),
        ("U.S.A. or U.K.?", "U.S.A. or U.K.?"),
        ("Choose a, b, c or d.", "Choose a, b, c or d."),
    ],
)
def test_a_text_is_screened_as_it_reads(text, read):
    from classifiers.lexical import readable

    assert readable(text) == read


@pytest.mark.parametrize(
    "text",
    [
        "Who is H4rry P0tt3r?",  # leetspeak
        "Who is H\u0430rry P\u043etter?",  # Cyrillic а and о
        "Who is Har-ry Pot-ter?",  # punctuation inside the words
        "Who is \u210d\U0001d51e\U0001d52f\U0001d52f\U0001d536 Potter?",  # mathematical letters
        "What did Row1ing write?",  # leetspeak in the alias
        "What did Row|ing write?",  # look-alike signs
        "Who is Harr¥ Pott€r?",
        "What did Row!ing write?",  # "!" for an "i" or "l" inside a word
    ],
)
def test_disguised_names_are_read_as_what_they_show(text):
    matcher = LexicalMatcher()
    matcher.add("hp", ["Harry Potter", "Rowling"])
    assert matcher.match(readable(text)), text


def test_a_word_of_another_script_is_read_transliterated():
    matcher = LexicalMatcher()
    matcher.add("s", ["Shakira"])
    assert matcher.match("Кто такая Шакира?") == {"s": "Shakira"}


@pytest.mark.parametrize(
    "text",
    [
        "It costs one cent, so what?",
        "50 cents is half a dollar.",
        "Who is Harry Styles?",
        "Harry! Pots of | clay: Yahoo!",
    ],
)
def test_folding_adds_no_match_of_its_own(text):
    matcher = LexicalMatcher()
    matcher.add("c", ["50 Cent"])
    matcher.add("hp", ["Harry Potter"])
    assert matcher.match(text) == {}
