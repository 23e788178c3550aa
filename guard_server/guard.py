"""The guard's per-request decision: which forget targets a request asks for, and what to do."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from guard_server import metrics
from logits_processors.params import ACTION_KEY, GUARD_KEYS, TARGETS_KEY

if TYPE_CHECKING:
    from classifiers.detector import Detector
    from guard_server.store import TargetStore

HEADER = "x-guard-targets"


@dataclass(frozen=True)
class Flag:
    """One forget target a request was found to ask for."""

    target_id: str
    version: int
    score: float
    evidence: str = ""


@dataclass(frozen=True)
class Verdict:
    """What detection decided for one request."""

    flags: tuple[Flag, ...] = ()
    action: str = "none"  # "none" | "refuse" | "restrict" | "partial"
    keep: tuple[str, ...] = ()  # partial: the last turn's clauses that ask something else

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def xargs(self) -> dict[str, Any]:
        # Targets travel as "<id>@<version>": the worker loads exactly that compiled version,
        # so a PATCH never changes what a request already in flight is restricted by.
        if not self.flagged:
            return {}
        return {
            TARGETS_KEY: [f"{f.target_id}@{f.version}" for f in self.flags],
            ACTION_KEY: self.action,
        }

    def header(self) -> str:
        return ",".join(f.target_id for f in self.flags)

    def report(self) -> dict[str, Any]:
        targets = [
            {
                "id": f.target_id,
                "version": f.version,
                "score": round(f.score, 4),
                "evidence": f.evidence,
            }
            for f in self.flags
        ]
        report = {"flagged": self.flagged, "action": self.action, "targets": targets}
        if self.keep:
            report["answered"] = list(self.keep)
        return report

    def without_partial(self) -> Verdict:
        """For raw-text prompts, which cannot be cut into turns: restrict instead."""
        return replace(self, action="restrict", keep=()) if self.action == "partial" else self


def keep_only(messages: list[Any], verdict: Verdict) -> None:
    """A partial verdict's request asks only the clauses that match no target.

    The last user turn is replaced by those clauses; the engine restricts the answer and
    ends it with the target's note, so the answer says what it leaves out.
    """
    if verdict.action != "partial":
        return
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            message["content"] = " ".join(verdict.keep)
            return


def apply_verdict(xargs: dict[str, Any] | None, verdict: Verdict) -> dict[str, Any] | None:
    """The request's vllm_xargs with the guard's keys set from the verdict alone.

    Client-sent guard keys are dropped: only detection decides who is restricted, so an
    unflagged request reaches the engine exactly as an unguarded server would see it.
    """
    cleaned = {k: v for k, v in (xargs or {}).items() if k not in GUARD_KEYS}
    cleaned.update(verdict.xargs())
    return cleaned or None


def conversation_texts(messages: Iterable[Any]) -> list[str]:
    """Every turn's text, oldest first (user, assistant and system turns alike)."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
    return [t for t in texts if t]


class Guard:
    """Screens requests against the registry's active targets, kept in sync with the store.

    Every screen first compares the store's write generation with the one it last loaded:
    a registration committed by this replica or any other is seen by the next request.
    """

    def __init__(self, store: TargetStore | None = None, detector: Detector | None = None):
        self.store = store
        self.detector = detector
        self._generation = -1
        self._sync_lock = threading.Lock()

    def sync(self) -> None:
        if self.store is None or self.detector is None:
            return
        generation = self.store.generation()
        if generation == self._generation:
            return
        with self._sync_lock:
            if generation == self._generation:
                return
            live: dict[str, Any] = {}
            after = None
            while batch := self.store.list(1000, after):
                live.update({r.id: r for r in batch if _guarded(r)})
                after = batch[-1].id
            for target_id in set(self.detector.targets) - set(live):
                self.detector.remove_target(target_id)
            changed = [
                (row.id, row.version, row.spec)
                for row in live.values()
                if (known := self.detector.targets.get(row.id)) is None
                or known.version != row.version
            ]
            for start in range(0, len(changed), 256):
                self.detector.add_targets(changed[start : start + 256])
            self._generation = generation

    def screen(self, texts: list[str]) -> Verdict:
        if self.detector is None or not texts:
            return Verdict()
        start = time.perf_counter()
        self.sync()
        matches, others = self.detector.screen(texts)
        metrics.DETECTION_SECONDS.observe(time.perf_counter() - start)
        if not matches:
            metrics.REQUESTS.labels("none").inc()
            return Verdict()
        policies = {self.detector.targets[m.target_id].policy for m in matches}
        action, keep = decide(policies, others)
        flags = tuple(Flag(m.target_id, m.version, m.score, m.evidence) for m in matches)
        metrics.REQUESTS.labels(action).inc()
        for flag in flags:
            metrics.TARGET_HITS.labels(flag.target_id).inc()
        return Verdict(flags, action, keep)


def decide(policies: set[str], others: list[str]) -> tuple[str, tuple[str, ...]]:
    """The action for a flagged request, and the clauses to keep asking.

    Any target with policy `restrict` restricts the whole answer. Otherwise the request is
    refused, or, when its last turn also asks things no target matches, answered partially.
    """
    if policies != {"refuse"}:
        return "restrict", ()
    return ("partial", tuple(others)) if others else ("refuse", ())


def _guarded(row: Any) -> bool:
    return row.status == "active" and row.spec.get("mode", "guard") in ("guard", "both")
