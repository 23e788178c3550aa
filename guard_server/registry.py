"""Forget-target lifecycle: validate, store (committed before acknowledged), compile, activate."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from classifiers.names import name_forms
from guard_server import errors
from guard_server.store import AuditEntry, DuplicateKey, TargetRow, TargetStore

if TYPE_CHECKING:
    from guard_server.auth import AdminKey
    from guard_server.compiler import Compiler
    from guard_server.protocol import TargetCreate, TargetPatch

logger = logging.getLogger(__name__)
ERR_DUPLICATE = "a forget target named {name!r} already exists (id {id})"
ERR_NOT_FOUND = "no forget target with id {id!r}"
ERR_STALE = "If-Match names version {expected}, but the target is at version {version}"
ERR_PATCH_COMPILE = "the new version did not compile ({error}); version {old} stays enforced"
ERR_AFTER = "after names no forget target ({id!r}): page with the last id of the page before"
ERR_BUSY = "forget target {id!r} is being changed by other requests; retry"
MAX_PATCH_RETRIES = 8


def new_target_id() -> str:
    return "tgt_" + secrets.token_hex(6)


class Registry:
    """The only writer of targets. Derived state (compiled blobs) is rebuilt from rows."""

    def __init__(self, store: TargetStore, compiler: Compiler):
        self.store = store
        self.compiler = compiler

    def create(self, body: TargetCreate, actor: AdminKey | None = None) -> TargetRow:
        existing = self.store.find_by_name(body.name)
        if existing is not None:
            raise errors.Conflict(ERR_DUPLICATE.format(name=body.name, id=existing.id), "name")
        row = TargetRow(new_target_id(), body.name, 1, "compiling", body.model_dump())
        try:
            self.store.insert(row, audited("create", row, actor))
        except DuplicateKey as exc:  # lost a race with a concurrent same-name create
            raise errors.Conflict(ERR_DUPLICATE.format(name=body.name, id="?"), "name") from exc
        return self._compile(row)

    def update(
        self,
        target_id: str,
        patch: TargetPatch,
        expected_version: int | None = None,
        actor: AdminKey | None = None,
    ) -> TargetRow:
        """A new version from `patch`, live only once compiled: until then, and for good if
        it fails to compile, the previous version stays enforced (never fail open).

        Optimistic: `expected_version` (If-Match) must be the stored version. Without it, a
        patch that loses a race to another is applied again on top of the winner's version,
        so neither update is lost.
        """
        changes = patch.model_dump(exclude_none=True)
        for _ in range(MAX_PATCH_RETRIES):
            row = self.get(target_id)
            if expected_version is not None and row.version != expected_version:
                raise errors.PreconditionFailed(
                    ERR_STALE.format(expected=expected_version, version=row.version), "if-match"
                )
            if "name" in changes:
                other = self.store.find_by_name(changes["name"])
                if other is not None and other.id != target_id:
                    name = ERR_DUPLICATE.format(name=other.name, id=other.id)
                    raise errors.Conflict(name, "name")
            spec = {**row.spec, **changes}
            new = replace(
                row,
                name=spec["name"],
                spec=spec,
                version=row.version + 1,
                status="active",
                error=None,
            )
            try:
                blob = self._blob(new)
            except Exception as exc:
                logger.exception("compiling %s@%d failed", new.id, new.version)
                raise errors.Unprocessable(
                    ERR_PATCH_COMPILE.format(error=f"{type(exc).__name__}: {exc}", old=row.version)
                ) from exc
            try:
                audit = audited("update", new, actor)
                if self.store.publish(new, blob, row.version, watch_phrases(new.spec), audit):
                    return self.store.get(target_id) or new
            except DuplicateKey as exc:  # a concurrent create took the name
                raise errors.Conflict(ERR_DUPLICATE.format(name=new.name, id="?"), "name") from exc
        raise errors.Conflict(ERR_BUSY.format(id=target_id), "id")

    def delete(self, target_id: str, actor: AdminKey | None = None) -> None:
        row = self.store.get(target_id)
        if row is None or not self.store.delete(target_id, audited("delete", row, actor)):
            raise errors.NotFound(ERR_NOT_FOUND.format(id=target_id), "id")

    def get(self, target_id: str) -> TargetRow:
        row = self.store.get(target_id)
        if row is None:
            raise errors.NotFound(ERR_NOT_FOUND.format(id=target_id), "id")
        return row

    def list(
        self, limit: int, after: str | None, name: str | None = None
    ) -> tuple[list[TargetRow], bool]:
        """A page of targets in the order they were created, filtered by name."""
        if after is not None and self.store.get(after) is None:
            raise errors.InvalidRequest(ERR_AFTER.format(id=after), "after")
        rows = self.store.by_creation(limit + 1, after, name)
        return rows[:limit], len(rows) > limit

    def import_many(self, bodies: list[TargetCreate], actor: AdminKey | None) -> list[dict]:
        """Create each target of a bulk import; one that fails is reported, not fatal."""
        results = []
        for body in bodies:
            try:
                results.append({"name": body.name, "target": to_wire(self.create(body, actor))})
            except errors.GuardError as exc:
                results.append({"name": body.name, "error": exc.message, "param": exc.param})
        return results

    def recover(self) -> int:
        """Compile rows a crash left half-done (status compiling, or active without a blob),
        and give the answer watch the names of active targets registered before it existed."""
        fixed = 0
        for row in self.store.every(500):
            blob = self.store.get_compiled(row.id, row.version)
            if row.status == "compiling" or (row.status == "active" and blob is None):
                self._compile(row)
                fixed += 1
            elif row.status == "active" and self.store.watch_version(row.id) != row.version:
                self.store.put_watch(row, watch_phrases(row.spec))
        return fixed

    def _blob(self, row: TargetRow) -> bytes:
        return self.compiler.compile(row.id, row.version, row.spec).to_bytes()

    def _compile(self, row: TargetRow) -> TargetRow:
        """Compile a row stored as `compiling` (a new target, or one a crash left half-done).

        Published only if the row is still at that version: a replica recovering the same
        row, or a PATCH that came first, is never overwritten with an older version.
        """
        blob = None
        try:
            blob = self._blob(row)
            done = replace(row, status="active", error=None)
        except Exception as exc:  # a failed compile leaves the target inactive, never half-on
            logger.exception("compiling %s@%d failed", row.id, row.version)
            done = replace(row, status="failed", error=f"{type(exc).__name__}: {exc}")
        self.store.publish(done, blob, row.version, watch_phrases(row.spec))
        return self.store.get(row.id) or done


def audited(op: str, row: TargetRow, actor: AdminKey | None) -> AuditEntry:
    """What the audit trail keeps of a write: never the key, its name and fingerprint."""
    name, mark = (actor.name, actor.fingerprint) if actor else ("server", "")
    return AuditEntry(op, row.id, row.name, row.version, name, mark)


def watch_phrases(spec: dict[str, Any]) -> list[str]:
    """The names the answer watch follows for a target, whatever its mode: the operator's
    name and aliases, and the comma-separated forms of them ("Prince Harry")."""
    return name_forms([spec["name"], *spec.get("aliases", [])])


def to_wire(row: TargetRow, full: bool = False) -> dict[str, Any]:
    """A target as the admin API shows it; `full` adds its whole spec (an export that
    `import` takes back)."""
    spec = row.spec
    wire = {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "error": row.error,
        "mode": spec.get("mode", "guard"),
        "policy": spec.get("policy", "refuse"),
        "aliases": spec.get("aliases", []),
        "keywords": spec.get("keywords", []),
        "documents": len(spec.get("documents", [])),
        "examples": len(spec.get("examples", [])),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if full:
        wire["spec"] = spec
    return wire
