"""The registry's SQL connection helpers and the records kept beside targets (verification
jobs, what was learned about each target, adapters), written once for every backend."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Learned:
    """What the served model was found to associate with one version of a target."""

    target_id: str
    version: int
    status: str  # "learning" | "done" | "failed"
    phrases: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # its cost, or why it failed
    updated_at: float = 0.0


class SQLRecords:
    """Statements use `?` placeholders and standard upserts; a backend supplies `_read()` (a
    connection for one read) and `_tx()` (a transaction that commits on exit, rolls back on
    error and raises `DuplicateKey` for a unique-constraint violation), each yielding an
    object whose `execute(sql, params)` returns a DB-API cursor."""

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _all(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._read() as db:
            return db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple | list = ()) -> tuple | None:
        with self._read() as db:
            return db.execute(sql, params).fetchone()

    def _bump(self, db: Any) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")

    def put_verification(self, job: dict[str, Any]) -> None:
        """A verification job's record (kept apart from the target's versions)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO verifications (id, target_id, started_at, body) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (job["id"], job["target_id"], job["started_at"], json.dumps(job)),
            )

    def latest_verification(self, target_id: str) -> dict[str, Any] | None:
        sql = "SELECT body FROM verifications WHERE target_id=? ORDER BY started_at DESC LIMIT 1"
        record = self._one(sql, (target_id,))
        return json.loads(record[0]) if record else None

    def claim_learning(self, target_id: str, version: int, stale_after: float) -> bool:
        now = time.time()
        with self._tx() as db:
            return (
                db.execute(
                    "INSERT INTO learned (target_id, version, status, phrases, detail, updated_at)"
                    " VALUES (?, ?, 'learning', '[]', '{}', ?) ON CONFLICT (target_id) DO UPDATE"
                    " SET version = excluded.version, status = 'learning', phrases = '[]',"
                    " detail = '{}', updated_at = excluded.updated_at"
                    " WHERE learned.version < excluded.version"
                    " OR (learned.status = 'learning' AND learned.updated_at < ?)",
                    (target_id, version, now, now - stale_after),
                ).rowcount
                > 0
            )

    def put_learned(self, learned: Learned) -> bool:
        with self._tx() as db:
            written = db.execute(
                "UPDATE learned SET status=?, phrases=?, detail=?, updated_at=?"
                " WHERE target_id=? AND version=?",
                (
                    learned.status,
                    json.dumps(learned.phrases),
                    json.dumps(learned.detail),
                    time.time(),
                    learned.target_id,
                    learned.version,
                ),
            ).rowcount
            if written:
                # Its own counter: the engine's answer watch, which follows `generation`,
                # is not rebuilt for what only screening reads.
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'learned'")
        return written > 0

    def learned(self, target_id: str | None = None) -> dict[str, Learned]:
        """What was learned, by target id (of one target, when given)."""
        sql = "SELECT target_id, version, status, phrases, detail, updated_at FROM learned"
        params: tuple = ()
        if target_id is not None:
            sql, params = sql + " WHERE target_id=?", (target_id,)
        return {
            r[0]: Learned(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5])
            for r in self._all(sql, params)
        }

    def put_adapter(self, name: str, path: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO adapters (name, path, created_at) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET path = excluded.path, created_at = excluded.created_at",
                (name, path, time.time()),
            )

    def delete_adapter(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM adapters WHERE name=?", (name,)).rowcount > 0

    def adapters(self) -> dict[str, str]:
        return dict(self._all("SELECT name, path FROM adapters ORDER BY created_at"))
