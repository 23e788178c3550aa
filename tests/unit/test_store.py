"""SQLiteStore: durable target rows, compiled blobs, generation counter, WAL and read-only use."""

import sqlite3
import threading
from dataclasses import replace

import pytest

from guard_server.store import DuplicateKey, SQLiteStore, TargetRow, name_key


def row(id_: str, name: str | None = None, **kw) -> TargetRow:
    return TargetRow(id=id_, name=name or f"Target {id_}", version=1, status="active", **kw)


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "sub" / "targets.db")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Harry Potter", "harry potter"),
        ("  Harry   POTTER ", "harry potter"),
        ("Straße", "strasse"),
        ("x", "x"),
    ],
)
def test_name_key(name, key):
    assert name_key(name) == key


def test_insert_then_get_round_trips(store):
    spec = {"name": "Harry Potter", "aliases": ["HP"], "nested": {"n": [1, 2]}}
    original = TargetRow("t1", "Harry Potter", 3, "compiling", spec, "boom", 10.0, 11.0)
    store.insert(original)
    assert store.get("t1") == original
    assert store.get("missing") is None


def test_insert_fills_missing_timestamps(store):
    store.insert(row("t1"))
    got = store.get("t1")
    assert got.created_at > 0 and got.updated_at > 0
    assert got.spec == {} and got.error is None


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("Harry Potter", True),
        ("harry potter", True),
        ("HARRY POTTER", True),
        ("  harry   potter  ", True),
        ("harry", False),
        ("harry potter 2", False),
    ],
)
def test_find_by_name_ignores_case_and_spacing(store, query, found):
    store.insert(row("t1", "Harry Potter"))
    store.insert(row("t2", "Albert Einstein"))
    got = store.find_by_name(query)
    assert (got.id if got else None) == ("t1" if found else None)


@pytest.mark.parametrize(
    ("limit", "after", "expected"),
    [
        (10, None, ["a", "b", "c", "d", "e"]),
        (2, None, ["a", "b"]),
        (2, "b", ["c", "d"]),
        (2, "d", ["e"]),
        (2, "e", []),
        (10, "bb", ["c", "d", "e"]),  # `after` need not be an existing id
        (0, None, []),
    ],
)
def test_list_pages_by_id(store, limit, after, expected):
    for id_ in ["d", "a", "e", "c", "b"]:
        store.insert(row(id_))
    assert [r.id for r in store.list(limit, after=after)] == expected


def test_list_pages_cover_everything_once(store):
    ids = [f"id{i:03d}" for i in range(23)]
    for id_ in reversed(ids):
        store.insert(row(id_))
    seen, after = [], None
    while page := store.list(5, after=after):
        seen += [r.id for r in page]
        after = page[-1].id
    assert seen == ids


def test_update_changes_fields_and_keeps_created_at(store):
    store.insert(row("t1", "Old Name", created_at=5.0, updated_at=5.0))
    store.update(TargetRow("t1", "New Name", 2, "failed", {"k": 1}, "bad spec", 99.0, 99.0))
    got = store.get("t1")
    assert (got.name, got.version, got.status, got.spec, got.error) == (
        "New Name",
        2,
        "failed",
        {"k": 1},
        "bad spec",
    )
    assert got.created_at == 5.0
    assert got.updated_at > 5.0
    assert store.find_by_name("new name").id == "t1"
    assert store.find_by_name("old name") is None


def test_delete_removes_row_and_compiled_blobs(store):
    store.insert(row("t1"))
    store.insert(row("t2"))
    store.put_compiled("t1", 1, b"one")
    store.put_compiled("t2", 1, b"two")
    assert store.delete("t1") is True
    assert store.delete("t1") is False
    assert store.get("t1") is None
    assert store.get_compiled("t1", 1) is None
    assert store.get_compiled("t2", 1) == b"two"
    assert [r.id for r in store.list(10)] == ["t2"]


@pytest.mark.parametrize(
    ("versions", "kept", "gone"),
    [
        ([1], {1: b"v1"}, []),
        ([1, 2], {1: b"v1", 2: b"v2"}, []),  # the previous version stays
        ([1, 2, 3], {2: b"v2", 3: b"v3"}, [1]),  # older ones are pruned
        ([1, 2, 3, 4, 5], {4: b"v4", 5: b"v5"}, [1, 2, 3]),
        ([1, 5], {5: b"v5"}, [1]),  # a jump prunes everything below version - 1
        ([3, 3], {3: b"v3"}, []),  # re-putting a version replaces it
    ],
)
def test_put_compiled_keeps_previous_version_and_prunes_older(store, versions, kept, gone):
    for v in versions:
        store.put_compiled("t1", v, f"v{v}".encode())
    store.put_compiled("other", 1, b"other")
    for v, blob in kept.items():
        assert store.get_compiled("t1", v) == blob
    for v in gone:
        assert store.get_compiled("t1", v) is None
    assert store.get_compiled("other", 1) == b"other"


def test_compiled_blobs_are_binary_safe(store):
    blob = bytes(range(256)) * 4
    store.put_compiled("t1", 1, blob)
    assert store.get_compiled("t1", 1) == blob
    assert store.get_compiled("t1", 2) is None


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.insert(row("new")),
        lambda s: s.update(replace(row("t1"), status="failed")),
        lambda s: s.delete("t1"),
        lambda s: s.delete("missing"),
        lambda s: s.put_compiled("t1", 2, b"x"),
    ],
    ids=["insert", "update", "delete", "delete-missing", "put_compiled"],
)
def test_generation_grows_on_every_write(store, write):
    store.insert(row("t1"))
    before = store.generation()
    write(store)
    assert store.generation() == before + 1
    write_again = store.generation()
    store.get("t1")
    store.list(10)
    store.find_by_name("x")
    store.get_compiled("t1", 2)
    assert store.generation() == write_again  # reads leave it alone


def test_generation_starts_at_zero_and_counts_writes(store):
    assert store.generation() == 0
    for i in range(5):
        store.insert(row(f"t{i}"))
    assert store.generation() == 5


@pytest.mark.parametrize("clash", ["Harry Potter", "harry potter", " HARRY  potter "])
def test_duplicate_name_key_raises_and_rolls_back(store, clash):
    store.insert(row("t1", "Harry Potter"))
    before = store.generation()
    with pytest.raises(DuplicateKey):
        store.insert(row("t2", clash))
    assert store.get("t2") is None
    assert store.generation() == before
    store.insert(row("t3", "Someone Else"))  # the connection is still usable
    assert store.generation() == before + 1


def test_update_to_a_taken_name_raises(store):
    store.insert(row("t1", "Harry Potter"))
    store.insert(row("t2", "Albert Einstein"))
    with pytest.raises(DuplicateKey):
        store.update(row("t2", "HARRY potter"))
    assert store.get("t2").name == "Albert Einstein"


def test_duplicate_id_raises(store):
    store.insert(row("t1", "One"))
    with pytest.raises(DuplicateKey):
        store.insert(row("t1", "Two"))


def test_wal_mode_is_on(store, tmp_path):
    store.insert(row("t1"))
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # The mode is persistent: a fresh plain connection sees it too.
    with sqlite3.connect(tmp_path / "sub" / "targets.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_data(tmp_path):
    path = tmp_path / "targets.db"
    SQLiteStore(path).insert(row("t1", "Harry Potter"))
    again = SQLiteStore(path)
    assert again.find_by_name("harry potter").id == "t1"
    assert again.generation() == 1


def test_readonly_store_sees_committed_rows(store):
    reader = SQLiteStore(store.path, readonly=True)
    assert reader.get("t1") is None
    assert reader.generation() == 0

    store.insert(row("t1", "Harry Potter"))
    store.put_compiled("t1", 1, b"blob")
    assert reader.get("t1") == store.get("t1")
    assert reader.find_by_name("HARRY POTTER").id == "t1"
    assert reader.get_compiled("t1", 1) == b"blob"
    assert reader.generation() == store.generation() == 2

    store.delete("t1")
    assert reader.get("t1") is None
    assert reader.list(10) == []


def test_readonly_store_cannot_write(store):
    store.insert(row("t1"))
    reader = SQLiteStore(store.path, readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        reader.insert(row("t2"))
    assert store.get("t2") is None


def test_store_is_usable_from_another_thread(store):
    errors: list[BaseException] = []

    def work():
        try:
            store.insert(row("from-thread"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
    assert store.get("from-thread") is not None


def test_readonly_store_opens_paths_with_uri_special_characters(tmp_path):
    folder = tmp_path / "a#b%41?c"
    store = SQLiteStore(folder / "guard.db")
    store.insert(TargetRow("t1", "Name", 1, "active", {"name": "Name"}))
    assert SQLiteStore(folder / "guard.db", readonly=True).get("t1").name == "Name"


def test_the_worker_reader_sees_compiled_blobs_without_the_server_package(store, tmp_path):
    import subprocess
    import sys

    store.insert(row("t1"))
    store.put_compiled("t1", 1, b"blob")
    code = (
        "import sys; from logits_processors.reader import open_reader; "
        f"r = open_reader({str(store.path)!r}); "
        "assert r.get_compiled('t1', 1) == b'blob' and r.get_compiled('t1', 2) is None; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'guard_server'], 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ValueError, match="unsupported registry location"):
        from logits_processors.reader import open_reader

        open_reader("redis://somewhere")
