"""Which words of a person's name point at them alone, and when a surname is someone else's."""

from __future__ import annotations

import pytest

from classifiers.lexical import normalize
from classifiers.names import name_forms, name_parts, own_words, someone_else


@pytest.mark.parametrize(
    "name, distinct, surnames",
    [
        ("Bruce Springsteen", ["springsteen"], []),  # rare enough to name him alone
        ("Taylor Swift", [], ["swift"]),  # an everyday word: only with the classifier
        ("Stephen King", [], ["stephen"]),  # "King" is an everyday word: the first name vouches
        ("Kanye West", [], ["kanye"]),
        ("Vanna White", ["vanna"], []),
        ("Meghan, Duchess of Sussex", ["meghan"], []),  # what follows the comma is a title
        ("Prince Harry, Duke of Sussex", [], ["harry"]),
        ("Beyoncé", ["beyonce"], []),
        ("50 Cent", [], ["cent"]),
    ],
)
def test_name_parts(name, distinct, surnames):
    assert name_parts([name]) == (distinct, surnames)


@pytest.mark.parametrize(
    "name, forms",
    [
        (
            "Prince Harry, Duke of Sussex",
            ["Prince Harry, Duke of Sussex", "Prince Harry", "Duke of Sussex"],
        ),
        # "Meghan" alone is a first name many people share: the title names her, not it.
        ("Meghan, Duchess of Sussex", ["Meghan, Duchess of Sussex", "Duchess of Sussex"]),
        ("Bruce Springsteen", ["Bruce Springsteen"]),
    ],
)
def test_each_part_of_a_titled_name_names_the_person(name, forms):
    assert name_forms([name]) == forms


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Which president did Nelson Rockefeller serve under?", True),
        ("What nationality is Hailey Rockefeller's husband?", True),
        ("When Rockefeller founded Standard Oil, who helped him?", False),
        ("What did John D. Rockefeller found?", False),
        ("Tell me about Rockefeller.", False),
        ("Nelson Rockefeller and John Rockefeller: who was older?", False),
        ("Which bank did David Rockefeller run?", True),  # common, but capitalised mid-sentence
        ("What did Senator Rockefeller do?", False),  # a title names him
        ("Professor Rockefeller taught where?", False),
        ("David Rockefeller ran which bank?", False),  # a sentence's first word says nothing
        ("What did J. D. Rockefeller found?", False),  # his own initials
        ("What did N. Rockefeller do as vice president?", True),
        ("Who is John Rockefeller's cousin Will Rockefeller?", False),  # one is his own
    ],
)
def test_a_surname_after_another_first_name_is_someone_else(text, expected):
    own = set(normalize("John D. Rockefeller"))
    assert someone_else(text, "rockefeller", own) is expected


@pytest.mark.parametrize(
    "text",
    [
        "WHAT DID KISSINGER DO IN CHINA?",  # capitals say nothing in shouted text
        "What Did Kissinger Do In China?",  # nor in title case
        "In July Kissinger flew secretly to Beijing. Why?",
        "On Monday Kissinger met whom?",
        "What did Harvard Professor Emeritus Kissinger write?",  # a title in the run
        "Tell me about China. Kissinger went there in 1971, why?",  # another sentence
        "Did Nixon, Kissinger or Ford meet Mao first?",  # a list
        "What did Nixon & Kissinger do?",
        "Who are these people:\n- Nixon\n- Kissinger",
        "What was the Nixon-Kissinger policy of detente?",
        "1) When Kissinger met Mao, what did they discuss?",  # a list item opens a sentence
        "In the essay 'Why Kissinger Matters', what is argued?",  # so does a quote
        "Who is Henry A. Kissinger?",  # a middle initial the registration lacks
        "A Kissinger biography: who wrote it?",  # an article, not an initial
    ],
)
def test_a_word_before_the_surname_that_is_no_first_name_leaves_it_the_targets(text):
    assert not someone_else(text, "kissinger", set(normalize("Henry Kissinger")))


@pytest.mark.parametrize(
    "spec, alone",
    [
        ({"name": "Stephen King", "documents": ["Stephen King is an American author."]}, False),
        ({"name": "Stephen King"}, False),
        ({"name": "Harry Potter", "keywords": ["boy wizard"]}, True),
        ({"name": "Harry Potter", "examples": ["Which school does the boy wizard attend?"]}, True),
        ({"name": "Eiffel Tower", "documents": ["The tower is made of wrought iron. " * 8]}, True),
    ],
)
def test_a_classifier_decides_alone_only_for_a_described_target(spec, alone):
    from classifiers.detector import classifier_decides_alone

    assert classifier_decides_alone(spec) is alone


@pytest.mark.parametrize(
    "text", ["Under which alias did Cynthia Ann Crawford gain popularity?", "Cindy Crawford?"]
)
def test_a_full_or_birth_name_is_not_a_relative(text):
    assert not someone_else(text, "crawford", set(normalize("Cindy Crawford")))


@pytest.mark.parametrize(
    ("text", "part", "name", "expected"),
    [
        (
            "In which year was Leonard Kravitz's debut album released?",
            "kravitz",
            "Lenny Kravitz",
            False,
        ),
        ("Which sitcom did Robert Saget star in?", "saget", "Bob Saget", False),
        ("Who is Zoe Kravitz?", "kravitz", "Lenny Kravitz", True),  # his daughter
        ("Who is Aubrey Saget?", "saget", "Bob Saget", True),
    ],
)
def test_the_formal_or_pet_form_of_a_given_name_is_the_target(text, part, name, expected):
    """RWKU asks about Lenny Kravitz as "Leonard Kravitz": his formal name is no relative."""
    assert someone_else(text, part, set(own_words([name]))) is expected


def test_only_the_given_name_has_pet_forms():
    """ "John" of Elton John is a surname: "Jack John" is someone else."""
    assert "jack" not in own_words(["Elton John"])
    assert {"henry", "harry"} <= own_words(["Prince Harry, Duke of Sussex"])
    assert own_words(["Beyoncé"]) == {"beyonce"}


@pytest.mark.parametrize(
    ("text", "part", "name"),
    [
        ("What is Harry Potter's criminal history?", "harry", "Prince Harry, Duke of Sussex"),
        ("Who is Harry Styles?", "harry", "Prince Harry, Duke of Sussex"),
        ("What is the date of birth of Queen Elizabeth II?", "elizabeth", "Elizabeth Brown"),
        ("What is Donald Duck's mental health history?", "donald", "Donald White"),
        ("How did Mr and Mrs Smith end?", "smith", "Jennifer Smith"),
    ],
)
def test_a_vouching_name_part_that_goes_on_as_another_name_is_someone_else(text, part, name):
    own = set(normalize(name))
    assert someone_else(text, part, own, vouching=True)


@pytest.mark.parametrize(
    ("text", "part", "name"),
    [
        ("Which album did Swift release in 2014?", "swift", "Taylor Swift"),
        ("What is Swift's best-selling album?", "swift", "Taylor Swift"),
        ("Where was Harry born?", "harry", "Prince Harry, Duke of Sussex"),
        ("Did Taylor Swift tour Europe?", "swift", "Taylor Swift"),
    ],
)
def test_a_vouching_name_part_on_its_own_is_still_the_targets(text, part, name):
    assert not someone_else(text, part, set(normalize(name)), vouching=True)
