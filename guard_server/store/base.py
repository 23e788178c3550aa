"""The registry's storage interface and its SQL, written once for every backend."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from guard_server.store.records import Learned, SQLRecords


class DuplicateKey(Exception):
    """A write broke a uniqueness rule (a target's id or name): nothing was written."""


@dataclass(frozen=True)
class AuditEntry:
    """One write to the registry: who (an admin key's name and fingerprint), what, when."""

    op: str  # "create" | "update" | "delete" | "import"
    target_id: str
    name: str
    version: int | None
    actor: str = ""
    fingerprint: str = ""
    at: float = 0.0
    seq: int = 0


@dataclass(frozen=True)
class TargetRow:
    """One stored forget target: the operator's spec plus its lifecycle."""

    id: str
    name: str
    version: int
    status: str  # "compiling" | "active" | "failed"
    spec: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class TargetStore(ABC):
    """What the registry needs from storage; SQLite here, PostgreSQL for several replicas.

    Every write is committed before it returns; `generation` grows with every write so a
    reader (another replica, the engine worker) can tell cheaply that something changed.
    """

    def close(self) -> None:
        """Release what the store holds open (a pool's connections); a no-op by default."""
        return None

    @abstractmethod
    def insert(self, row: TargetRow, audit: AuditEntry | None = None) -> None: ...

    @abstractmethod
    def update(self, row: TargetRow) -> None: ...

    @abstractmethod
    def delete(self, target_id: str, audit: AuditEntry | None = None) -> bool: ...

    @abstractmethod
    def get(self, target_id: str) -> TargetRow | None: ...

    @abstractmethod
    def find_by_name(self, name: str) -> TargetRow | None: ...

    @abstractmethod
    def list(self, limit: int, after: str | None = None) -> list[TargetRow]: ...

    def every(self, page: int = 1000) -> Iterator[TargetRow]:
        """Every target, by id, read `page` rows at a time."""
        after = None
        while batch := self.list(page, after):
            yield from batch
            after = batch[-1].id

    @abstractmethod
    def put_compiled(self, target_id: str, version: int, blob: bytes) -> None: ...

    @abstractmethod
    def get_compiled(self, target_id: str, version: int) -> bytes | None: ...

    @abstractmethod
    def publish(
        self,
        row: TargetRow,
        blob: bytes | None,
        expected_version: int,
        watch: list[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> bool:
        """Make `row` (a new version, compiled as `blob`, its names `watch` for the answer
        watch) the live one in one transaction, only if the stored version is still
        `expected_version`; False when it is not."""

    @abstractmethod
    def put_watch(self, row: TargetRow, phrases: list[str]) -> None:
        """The names the answer watch follows for an active target."""

    @abstractmethod
    def watch_version(self, target_id: str) -> int | None: ...

    @abstractmethod
    def generation(self) -> int: ...

    @abstractmethod
    def claim_learning(self, target_id: str, version: int, stale_after: float) -> bool:
        """Take the learning of a target's version, unless it is learned, or being learned
        by a replica heard from in the last `stale_after` seconds. Whether it was taken."""

    @abstractmethod
    def put_learned(self, learned: Learned) -> bool:
        """Record what was learned for a claimed version (False: the target moved on)."""

    @abstractmethod
    def learned(self, target_id: str | None = None) -> dict[str, Learned]: ...

    @abstractmethod
    def generations(self) -> tuple[int, int]: ...

    @abstractmethod
    def put_adapter(self, name: str, path: str) -> None: ...

    @abstractmethod
    def delete_adapter(self, name: str) -> bool: ...

    @abstractmethod
    def adapters(self) -> dict[str, str]: ...


# One schema for every backend; each names its own types for bytes, floats and counters.
SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    error TEXT,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS compiled (
    target_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    blob {blob} NOT NULL,
    PRIMARY KEY (target_id, version)
);
CREATE TABLE IF NOT EXISTS watch (
    target_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    policy TEXT NOT NULL,
    phrases TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS learned (
    target_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    phrases TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq {serial},
    at {real} NOT NULL,
    actor TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    op TEXT NOT NULL,
    target_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER
);
CREATE TABLE IF NOT EXISTS verifications (
    id TEXT PRIMARY KEY,
    target_id TEXT NOT NULL,
    started_at {real} NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adapters (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value {counter} NOT NULL);
INSERT INTO meta (key, value) VALUES ('generation', 0) ON CONFLICT (key) DO NOTHING;
INSERT INTO meta (key, value) VALUES ('learned', 0) ON CONFLICT (key) DO NOTHING;
"""
_COLUMNS = "id, name, version, status, spec, error, created_at, updated_at"


def name_key(name: str) -> str:
    """Names are unique regardless of case and surrounding spaces."""
    return " ".join(name.split()).casefold()


def _row(record: tuple) -> TargetRow:
    id_, name, version, status, spec, error, created, updated = record
    return TargetRow(id_, name, version, status, json.loads(spec), error, created, updated)


class SQLStore(SQLRecords, TargetStore):
    """The registry in SQL, written once for every backend (`SQLRecords` says what a
    backend supplies)."""

    @staticmethod
    def _audit(db: Any, entry: AuditEntry | None) -> None:
        if entry is None:
            return
        db.execute(
            "INSERT INTO audit (at, actor, fingerprint, op, target_id, name, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.at or time.time(),
                entry.actor,
                entry.fingerprint,
                entry.op,
                entry.target_id,
                entry.name,
                entry.version,
            ),
        )

    def audit_log(
        self, target_id: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[AuditEntry]:
        """Registry writes, newest first; `before` a `seq` to page from."""
        sql = "SELECT op, target_id, name, version, actor, fingerprint, at, seq FROM audit"
        where, params = [], []
        if target_id is not None:
            where.append("target_id = ?")
            params.append(target_id)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        records = self._all(sql, (*params, limit))
        return [AuditEntry(*r) for r in records]

    def insert(self, row: TargetRow, audit: AuditEntry | None = None) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO targets ({_COLUMNS}, name_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.name,
                    row.version,
                    row.status,
                    json.dumps(row.spec),
                    row.error,
                    row.created_at or time.time(),
                    row.updated_at or time.time(),
                    name_key(row.name),
                ),
            )
            self._audit(db, audit)
            self._bump(db)

    def update(self, row: TargetRow) -> None:
        with self._tx() as db:
            self._write_row(db, row)
            self._bump(db)

    @staticmethod
    def _write_row(db: Any, row: TargetRow, expected_version: int | None = None) -> int:
        """Overwrite a stored row; with `expected_version`, only if that is still stored."""
        sql = (
            "UPDATE targets SET name=?, name_key=?, version=?, status=?, spec=?, error=?,"
            " updated_at=? WHERE id=?"
        )
        values = [
            row.name,
            name_key(row.name),
            row.version,
            row.status,
            json.dumps(row.spec),
            row.error,
            time.time(),
            row.id,
        ]
        if expected_version is not None:
            sql += " AND version=?"
            values.append(expected_version)
        return db.execute(sql, values).rowcount

    def delete(self, target_id: str, audit: AuditEntry | None = None) -> bool:
        with self._tx() as db:
            gone = db.execute("DELETE FROM targets WHERE id=?", (target_id,)).rowcount > 0
            if gone:
                self._audit(db, audit)
            db.execute("DELETE FROM compiled WHERE target_id=?", (target_id,))
            db.execute("DELETE FROM watch WHERE target_id=?", (target_id,))
            db.execute("DELETE FROM learned WHERE target_id=?", (target_id,))
            db.execute("DELETE FROM verifications WHERE target_id=?", (target_id,))
            self._bump(db)
        return gone

    def get(self, target_id: str) -> TargetRow | None:
        sql = f"SELECT {_COLUMNS} FROM targets WHERE id=?"
        record = self._one(sql, (target_id,))
        return _row(record) if record else None

    def find_by_name(self, name: str) -> TargetRow | None:
        sql = f"SELECT {_COLUMNS} FROM targets WHERE name_key=?"
        record = self._one(sql, (name_key(name),))
        return _row(record) if record else None

    def list(self, limit: int, after: str | None = None) -> list[TargetRow]:
        sql = f"SELECT {_COLUMNS} FROM targets WHERE id > ? ORDER BY id LIMIT ?"
        return [_row(r) for r in self._all(sql, (after or "", limit))]

    def by_creation(
        self, limit: int, after: str | None = None, name: str | None = None
    ) -> list[TargetRow]:
        """Targets in the order they were created, after the target `after`, whose name
        holds `name` (any case)."""
        sql = f"SELECT {_COLUMNS} FROM targets"
        where, params = [], []
        if after is not None:
            where.append(
                "(created_at > (SELECT created_at FROM targets WHERE id = ?) OR (created_at ="
                " (SELECT created_at FROM targets WHERE id = ?) AND id > ?))"
            )
            params += [after, after, after]
        if name:
            where.append("name_key LIKE ? ESCAPE '!'")
            escaped = name_key(name).replace("!", "!!").replace("%", "!%").replace("_", "!_")
            params.append(f"%{escaped}%")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id LIMIT ?"
        return [_row(r) for r in self._all(sql, (*params, limit))]

    def put_compiled(self, target_id: str, version: int, blob: bytes) -> None:
        with self._tx() as db:
            self._put_compiled(db, target_id, version, blob)
            self._bump(db)

    def _put_compiled(self, db: Any, target_id: str, version: int, blob: bytes) -> None:
        db.execute(
            "INSERT INTO compiled (target_id, version, blob) VALUES (?, ?, ?)"
            " ON CONFLICT (target_id, version) DO UPDATE SET blob = excluded.blob",
            (target_id, version, blob),
        )
        # Older versions stay until the next one is active: in-flight requests name them.
        db.execute(
            "DELETE FROM compiled WHERE target_id=? AND version < ?", (target_id, version - 1)
        )

    def publish(
        self,
        row: TargetRow,
        blob: bytes | None,
        expected_version: int,
        watch: list[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> bool:
        with self._tx() as db:
            swapped = self._write_row(db, row, expected_version)
            if not swapped:
                return False
            self._audit(db, audit)
            if blob is not None:
                self._put_compiled(db, row.id, row.version, blob)
            if watch is not None and row.status == "active":
                self._put_watch(db, row, watch)
            self._bump(db)
        return True

    def put_watch(self, row: TargetRow, phrases: list[str]) -> None:
        with self._tx() as db:
            self._put_watch(db, row, phrases)
            self._bump(db)

    @staticmethod
    def _put_watch(db: Any, row: TargetRow, phrases: list[str]) -> None:
        db.execute(
            "INSERT INTO watch (target_id, version, policy, phrases) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (target_id) DO UPDATE SET version = excluded.version,"
            " policy = excluded.policy, phrases = excluded.phrases",
            (row.id, row.version, row.spec.get("policy", "refuse"), json.dumps(phrases)),
        )

    def watch_version(self, target_id: str) -> int | None:
        """The version of a target whose names the answer watch follows, or None."""
        record = self._one("SELECT version FROM watch WHERE target_id=?", (target_id,))
        return record[0] if record else None

    def get_compiled(self, target_id: str, version: int) -> bytes | None:
        sql = "SELECT blob FROM compiled WHERE target_id=? AND version=?"
        record = self._one(sql, (target_id, version))
        return bytes(record[0]) if record else None

    def generation(self) -> int:
        sql = "SELECT value FROM meta WHERE key='generation'"
        return int(self._one(sql)[0])

    def generations(self) -> tuple[int, int]:
        """(`generation`, how many times something was learned), in one read."""
        rows = dict(self._all("SELECT key, value FROM meta WHERE key IN ('generation', 'learned')"))
        return int(rows["generation"]), int(rows.get("learned", 0))
