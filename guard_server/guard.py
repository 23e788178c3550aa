"""The guard's per-request decision: which forget targets a request asks for, and what to do."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from logits_processors.params import ACTION_KEY, GUARD_KEYS, TARGETS_KEY

# A request's flagged targets travel as "<target id>@<version>": the worker loads the compiled
# state of exactly that version, so a PATCH never races a request already in flight.
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
    action: str = "none"  # "none" | "refuse" | "restrict"

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def xargs(self) -> dict[str, Any]:
        if not self.flagged:
            return {}
        return {
            TARGETS_KEY: [f"{f.target_id}@{f.version}" for f in self.flags],
            ACTION_KEY: self.action,
        }

    def header(self) -> str:
        return ",".join(f.target_id for f in self.flags)

    def report(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "action": self.action,
            "targets": [
                {
                    "id": f.target_id,
                    "version": f.version,
                    "score": round(f.score, 4),
                    "evidence": f.evidence,
                }
                for f in self.flags
            ],
        }


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


@dataclass
class Guard:
    """Screens requests. Without registered targets every verdict is empty."""

    detector: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Guard:
        return cls(options={"db": args.db, "embedding_model": args.embedding_model})

    def screen(self, texts: list[str]) -> Verdict:
        if self.detector is None or not texts:
            return Verdict()
        return self.detector.screen(texts)
