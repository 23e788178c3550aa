"""What the server learns about a target reaches screening, on the real encoder and a real
registry on disk, without a restart: a question that points at the target through two of
its associations is flagged; one association alone is a neighbour's question."""

from __future__ import annotations

from guard_server.guard import Guard
from guard_server.store import Learned, SQLiteStore, TargetRow

BRUCE_LEE = {"name": "Bruce Lee", "documents": ["A martial artist."]}
REVERSE = "Who founded Jeet Kune Do and starred in Enter the Dragon?"
NEIGHBOUR = "Who directed Enter the Dragon?"


def test_learned_associations_flag_the_question_on_the_next_screen(tmp_path):
    from classifiers.detector import Detector
    from guard_server.models import load_encoder

    store = SQLiteStore(tmp_path / "guard.db")
    store.insert(TargetRow("t1", "Bruce Lee", 1, "active", BRUCE_LEE))
    guard = Guard(store, Detector(load_encoder()))
    assert not guard.screen([REVERSE]).flagged  # nothing known points there yet

    assert store.claim_learning("t1", 1, stale_after=600)
    store.put_learned(Learned("t1", 1, "done", ["Jeet Kune Do", "Enter the Dragon"]))
    verdict = guard.screen([REVERSE])
    assert [f.target_id for f in verdict.flags] == ["t1"] and verdict.action == "refuse"
    assert verdict.flags[0].evidence == "associations:jeet kune do; enter the dragon"
    assert not guard.screen([NEIGHBOUR]).flagged
    # Earlier turns count: the conversation asks it, whichever turn holds what.
    assert guard.screen(["Tell me about Jeet Kune Do.", "Who starred in Enter the Dragon?"]).flagged

    # What was learned belongs to the version it was learned for.
    store.update(TargetRow("t1", "Bruce Lee", 2, "active", BRUCE_LEE | {"aliases": ["Lee"]}))
    assert not guard.screen([REVERSE]).flagged
