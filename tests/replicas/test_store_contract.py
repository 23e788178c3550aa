"""Both registry backends keep the same promises: SQLite on disk and a real PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from bench.pgserver import reset
from guard_server.protocol import TargetCreate, TargetPatch
from guard_server.registry import Registry
from guard_server.store import DuplicateKey, Learned, TargetRow, open_store
from logits_processors.reader import open_reader
from tests.unit.test_registry import StubCompiler


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "guard.db")
    url = request.getfixturevalue("postgres_url")
    reset(url)
    return url


def row(id_: str, name: str = "Harry Potter", version: int = 1) -> TargetRow:
    return TargetRow(id_, name, version, "active", {"name": name})


def test_rows_blobs_and_generations(location):
    store = open_store(location)
    start = store.generation()
    store.insert(row("t1"))
    assert store.get("t1").name == "Harry Potter"
    assert store.find_by_name("  harry   POTTER ").id == "t1"
    store.put_compiled("t1", 1, b"\x00blob\xff")
    assert store.get_compiled("t1", 1) == b"\x00blob\xff"
    assert open_reader(location).get_compiled("t1", 1) == b"\x00blob\xff"
    store.put_compiled("t1", 1, b"again")
    assert store.get_compiled("t1", 1) == b"again"
    assert store.generation() == start + 3
    with pytest.raises(DuplicateKey):
        store.insert(row("t2", "HARRY potter"))
    assert store.get("t2") is None
    assert [r.id for r in store.list(10)] == ["t1"]
    assert store.delete("t1") and store.get_compiled("t1", 1) is None


def test_publish_is_a_compare_and_swap(location):
    store = open_store(location)
    store.insert(row("t1"))
    assert store.publish(replace(row("t1"), version=2), b"v2", expected_version=1)
    assert not store.publish(replace(row("t1"), version=2), b"stale", expected_version=1)
    assert store.get("t1").version == 2 and store.get_compiled("t1", 2) == b"v2"


def test_learning_is_claimed_once_per_version_and_kept_until_the_target_goes(location):
    store, other = open_store(location), open_store(location)  # two replicas
    store.insert(row("t1"))
    assert store.claim_learning("t1", 1, stale_after=600)
    assert not other.claim_learning("t1", 1, stale_after=600)  # being learned elsewhere
    assert other.claim_learning("t1", 1, stale_after=-1)  # ... by a replica gone silent
    generation, learned = store.generations()
    assert store.put_learned(Learned("t1", 1, "done", ["Star Wars"], {"seconds": 1.5}))
    # Screening sees it on its next request; the engine's answer watch is not rebuilt.
    assert store.generations() == (generation, learned + 1)
    assert not store.put_learned(Learned("t1", 7, "done", ["stale"]))  # never claimed
    assert other.learned("t2") == {}
    learned = other.learned("t1")["t1"]
    assert (learned.version, learned.status, learned.phrases) == (1, "done", ["Star Wars"])
    assert learned.detail == {"seconds": 1.5}
    assert not other.claim_learning("t1", 1, stale_after=-1)  # done is done
    assert other.claim_learning("t1", 2, stale_after=600)  # a new version is learned again
    assert store.learned()["t1"].phrases == []
    store.delete("t1")
    assert store.learned() == {}


def test_adapters_are_upserted(location):
    store = open_store(location)
    store.put_adapter("a", "/one")
    store.put_adapter("a", "/two")
    assert store.adapters() == {"a": "/two"}
    assert store.delete_adapter("a") and store.adapters() == {}


def test_two_writers_on_one_registry_lose_no_update(location):
    """Two replicas (two store objects) patch one target at the same time."""
    first = Registry(open_store(location), StubCompiler())
    second = Registry(open_store(location), StubCompiler())
    target = first.create(TargetCreate(name="Harry Potter"))
    release = first.compiler.hold[2] = threading.Event()
    slow = threading.Thread(
        target=first.update, args=(target.id, TargetPatch(aliases=["Hogwarts"]))
    )
    slow.start()
    assert first.compiler.started.setdefault(2, threading.Event()).wait(10)
    second.update(target.id, TargetPatch(keywords=["Quidditch"]))
    release.set()
    slow.join(10)
    final = second.get(target.id)
    assert final.version == 3
    assert final.spec["aliases"] == ["Hogwarts"] and final.spec["keywords"] == ["Quidditch"]


def test_every_write_is_audited_with_who_made_it_in_the_same_store(location):
    from guard_server.auth import AdminKey

    registry = Registry(open_store(location), StubCompiler())
    alice, ci = AdminKey("alice", "a1b2c3d4e5f6"), AdminKey("ci", "0f0f0f0f0f0f")
    made = registry.create(TargetCreate(name="Harry Potter"), alice)
    registry.update(made.id, TargetPatch(aliases=["Hogwarts"]), actor=ci)
    registry.delete(made.id, ci)
    log = registry.store.audit_log()
    assert [(e.op, e.actor, e.fingerprint, e.version) for e in log] == [
        ("delete", "ci", "0f0f0f0f0f0f", 2),
        ("update", "ci", "0f0f0f0f0f0f", 2),
        ("create", "alice", "a1b2c3d4e5f6", 1),
    ]
    assert all(e.target_id == made.id and e.name == "Harry Potter" and e.at > 0 for e in log)
    assert registry.store.audit_log(limit=1, before=log[0].seq) == log[1:2]
    assert registry.store.audit_log(target_id="tgt_other") == []


def test_targets_list_in_creation_order_filtered_by_name(location):
    registry = Registry(open_store(location), StubCompiler())
    names = ["Zed Alpha", "Amy Brown", "Bob Brown", "Carl Green", "100%_sure"]
    made = [registry.create(TargetCreate(name=n)).id for n in names]
    page, more = registry.list(2, None)
    assert [r.id for r in page] == made[:2] and more
    page, more = registry.list(10, made[1])
    assert [r.id for r in page] == made[2:] and not more
    assert [r.name for r in registry.list(10, None, "BROWN")[0]] == ["Amy Brown", "Bob Brown"]
    assert [r.name for r in registry.list(10, None, "0%_")[0]] == ["100%_sure"]  # literal
    assert registry.list(10, None, "%")[0][0].name == "100%_sure"


def test_guard_unlearn_reads_a_target_from_either_registry(location):
    from guard_server.unlearn.cli import load_spec

    registry = Registry(open_store(location), StubCompiler())
    made = registry.create(TargetCreate(name="Harry Potter", aliases=["Hogwarts"]))
    assert load_spec(made.id, location)["aliases"] == ["Hogwarts"]
    with pytest.raises(ValueError, match="tgt_nobody"):
        load_spec("tgt_nobody", location)
