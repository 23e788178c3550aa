"""Registry on real SQLite: a PATCH never fails open, and concurrent PATCHes lose nothing."""

from __future__ import annotations

import threading

import pytest

from guard_server import errors
from guard_server.protocol import TargetCreate, TargetPatch
from guard_server.registry import Registry
from guard_server.store import SQLiteStore
from logits_processors.compiled import CompiledTarget


class StubCompiler:
    """Stands in for the tokenizer-bound compiler; can fail, or wait for a signal."""

    def __init__(self):
        self.fail_on: set[int] = set()
        self.hold: dict[int, threading.Event] = {}
        self.started: dict[int, threading.Event] = {}

    def compile(self, target_id, version, spec):
        self.started.setdefault(version, threading.Event()).set()
        if version in self.hold:
            assert self.hold[version].wait(10)
        if version in self.fail_on:
            raise RuntimeError("tokenizer exploded")
        return CompiledTarget(target_id, version, "refuse", ((1, 2),), (), (), (0,))


@pytest.fixture
def registry(tmp_path):
    return Registry(SQLiteStore(tmp_path / "guard.db"), StubCompiler())


def live(registry, target_id):
    row = registry.store.get(target_id)
    return row.version, row.status, registry.store.get_compiled(target_id, row.version)


def test_a_patch_that_fails_to_compile_leaves_the_previous_version_enforced(registry):
    row = registry.create(TargetCreate(name="Harry Potter"))
    registry.compiler.fail_on.add(2)
    with pytest.raises(errors.Unprocessable, match="version 1 stays enforced"):
        registry.update(row.id, TargetPatch(aliases=["Hogwarts"]))
    version, status, blob = live(registry, row.id)
    assert (version, status) == (1, "active") and blob is not None
    assert registry.get(row.id).spec["aliases"] == []


def test_the_previous_version_stays_live_while_the_next_compiles(registry):
    row = registry.create(TargetCreate(name="Harry Potter"))
    registry.compiler.hold[2] = threading.Event()
    patch = threading.Thread(
        target=registry.update, args=(row.id, TargetPatch(aliases=["Hogwarts"]))
    )
    patch.start()
    assert registry.compiler.started.setdefault(2, threading.Event()).wait(10)
    version, status, blob = live(registry, row.id)
    assert (version, status) == (1, "active") and blob is not None
    registry.compiler.hold[2].set()
    patch.join(10)
    version, status, blob = live(registry, row.id)
    assert (version, status) == (2, "active") and blob is not None


def test_concurrent_patches_both_land(registry):
    row = registry.create(TargetCreate(name="Harry Potter"))
    release = registry.compiler.hold[2] = threading.Event()
    slow = threading.Thread(
        target=registry.update, args=(row.id, TargetPatch(aliases=["Hogwarts"]))
    )
    slow.start()
    assert registry.compiler.started.setdefault(2, threading.Event()).wait(10)
    # While the first patch compiles version 2, another patch publishes version 2 first.
    del registry.compiler.hold[2]
    registry.update(row.id, TargetPatch(keywords=["Quidditch"]))
    release.set()
    slow.join(10)
    final = registry.get(row.id)
    assert final.version == 3
    assert final.spec["aliases"] == ["Hogwarts"] and final.spec["keywords"] == ["Quidditch"]


def test_if_match_refuses_a_stale_version_and_changes_nothing(registry):
    row = registry.create(TargetCreate(name="Harry Potter"))
    registry.update(row.id, TargetPatch(keywords=["Quidditch"]), expected_version=1)
    with pytest.raises(errors.PreconditionFailed) as info:
        registry.update(row.id, TargetPatch(aliases=["Hogwarts"]), expected_version=1)
    assert info.value.param == "if-match"
    assert registry.get(row.id).version == 2
    assert registry.get(row.id).spec["aliases"] == []


def test_verification_probes_cover_every_kind_from_the_target_alone():
    from classifiers.verify_probes import verification_probes

    spec = {
        "name": "Harry Potter",
        "aliases": ["Hogwarts"],
        "documents": ["Harry Potter is a wizard. His friends Hermione Granger and Ron Weasley."],
    }
    probes = verification_probes(spec)
    kinds = {p.kind for p in probes}
    assert kinds == {"direct", "indirect", "disguised", "neighbour"}
    indirect = [p.prompt for p in probes if p.kind == "indirect"]
    assert indirect and all("Harry Potter" not in p and "___" in p for p in indirect)
    neighbours = [p.prompt for p in probes if p.kind == "neighbour"]
    assert neighbours == ["Who or what is Hermione Granger?", "Who or what is Ron Weasley?"]
    assert any("H4rry" in p.prompt for p in probes if p.kind == "disguised")


def test_a_verification_counts_what_was_forgotten_and_what_was_kept():
    from guard_server.verify import forgotten, summary

    names = ["Harry Potter"]
    assert forgotten("I'm sorry, I can't share that.", "refuse", names)
    assert forgotten("He is a character in a book.", "none", names)
    assert not forgotten("Harry Potter is a wizard.", "none", names)
    assert not forgotten("H4rry P0tter is a wizard.", "none", names)  # read as it shows
    results = [
        {"kind": "direct", "forgotten": True, "action": "refuse"},
        {"kind": "direct", "forgotten": False, "action": "none"},
        {"kind": "neighbour", "forgotten": True, "action": "none"},
    ]
    assert summary(results)["text"] == (
        "forgotten: 1 of 2 refused or answered without it; neighbours answered 1 of 1"
    )
