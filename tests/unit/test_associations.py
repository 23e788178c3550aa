"""Associations: what a question can point at a target through without naming it."""

from __future__ import annotations

import pytest

from classifiers.associations import GENERIC_TARGETS, AssociationIndex, extract
from classifiers.lexical import readable
from guard_server.guard import documented
from guard_server.store import Learned, SQLiteStore, TargetRow
from logits_processors.params import UNWATCHED_KEY, unwatched

HAMILL = ["Luke Skywalker", "Star Wars", "The Empire Strikes Back"]
INDEX = AssociationIndex({"hamill": HAMILL, "king": ["The Shining", "Shawshank Redemption"]})


def test_an_answer_gives_its_titles_and_proper_names_less_the_targets_own():
    text = (
        'Mark Hamill is best known for playing Luke Skywalker in "Star Wars" and voicing the '
        "Joker. He lives in New York with Marilou York. Hamill said: 'I love the Force.'"
    )
    found = extract(text, ["Mark Hamill"])
    assert {"Luke Skywalker", "Star Wars", "Marilou York"} <= set(found)
    # Everyday capitalised words and phrases point at nobody in particular.
    assert not {"Mark Hamill", "Hamill", "He", "New York", "Joker", "I love the Force"} & set(found)


def test_a_run_joined_by_small_words_counts_whole_and_in_its_parts():
    found = extract("Warren Buffett is the CEO of Berkshire Hathaway.", ["Warren Buffett"])
    assert "CEO of Berkshire Hathaway" in found and "Berkshire Hathaway" in found


def test_the_operators_documents_give_associations_at_once():
    spec = {"name": "Mark Hamill", "documents": ["An actor known for Luke Skywalker in Star Wars."]}
    assert documented(spec) == ["Luke Skywalker", "Star Wars"]


@pytest.mark.parametrize(
    "question",
    [
        "Who starred as the spacefarer, Luke Skywalker, in the Star Wars trilogies?",
        "What else did the actor who played Luke Skywalker in Star Wars do?",
        "Name the man behind Luke Skywalker in The Empire Strikes Back.",
        # Disguised as a reader still reads them.
        "Who played L-u-k-e Skyw4lker in \u0405tar Wars?",
    ],
)
def test_two_associations_in_a_question_about_a_person_point_at_the_target(question):
    assert set(INDEX.match(readable(question))) == {"hamill"}


@pytest.mark.parametrize(
    "question",
    [
        # One association is a neighbour's question: the film's director, its other actors.
        "Who directed the original Star Wars film?",
        "Who played Han Solo alongside Luke Skywalker?",
        # Two, in a text that asks about no person ("Star" of "Star Wars" is not a cue).
        "Luke Skywalker and Star Wars: a summary of the plot, please.",
        # The same phrase twice, or one phrase inside another, is one association.
        "Who is Luke Skywalker? Tell me more about Luke Skywalker.",
        "Who wrote the book Shawshank Redemption is based on?",
    ],
)
def test_one_association_or_no_question_about_a_person_points_at_nobody(question):
    assert INDEX.match(question) == {}


def test_a_phrase_many_targets_share_is_generic():
    shared = {f"t{i}": ["Academy Award", f"Quasar Opera {i}"] for i in range(GENERIC_TARGETS + 1)}
    index = AssociationIndex(shared)
    assert index.match("Who won an Academy Award for Quasar Opera 1?") == {}
    rare = AssociationIndex({"t1": ["Academy Award", "Quasar Opera 1"]})
    assert set(rare.match("Who won an Academy Award for Quasar Opera 1?")) == {"t1"}


def test_common_english_is_never_an_association():
    index = AssociationIndex({"t": ["New York", "The Simple Life", "Love Story", "Cheers"]})
    assert index.size == 0


def test_what_is_learned_is_kept_per_version_in_the_registry(tmp_path):
    store = SQLiteStore(tmp_path / "guard.db")
    store.insert(TargetRow("t1", "Bruce Lee", 1, "active", {"name": "Bruce Lee"}))
    assert store.claim_learning("t1", 1, stale_after=600)
    store.put_learned(Learned("t1", 1, "done", ["Jeet Kune Do"], {"tokens": 64}))
    again = SQLiteStore(tmp_path / "guard.db").learned()["t1"]
    assert (again.status, again.phrases, again.detail) == ("done", ["Jeet Kune Do"], {"tokens": 64})


def test_only_the_servers_own_requests_skip_the_answer_watch():
    from guard_server.guard import Verdict, apply_verdict

    assert unwatched({UNWATCHED_KEY: True})
    assert not unwatched({UNWATCHED_KEY: 1}) and not unwatched({UNWATCHED_KEY: "true"})
    # A client's key never reaches the engine, whatever its value.
    for value in (True, 1, "true"):
        assert apply_verdict({UNWATCHED_KEY: value, "other": 1}, Verdict()) == {"other": 1}
