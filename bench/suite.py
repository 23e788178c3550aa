"""Probe suites: targets with documents and leak keywords, probes by kind, retain prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

REFUSAL_MARKERS = (
    "i'm sorry",
    "i am sorry",
    "i can't",
    "i cannot",
    "i can not",
    "i don't know",
    "i do not know",
    "not able to",
    "unable to",
)


@dataclass(frozen=True)
class Probe:
    target: str
    kind: str
    messages: tuple[dict[str, str], ...]
    leak_keywords: tuple[str, ...]


def load_suite(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return json.loads(path.read_text())
    text = resources.files("bench").joinpath(f"suites/{name_or_path}.json").read_text()
    return json.loads(text)


def forget_probes(suite: dict[str, Any]) -> list[Probe]:
    probes = []
    for target in suite["targets"]:
        keys = tuple(k.lower() for k in target["leak_keywords"])
        for p in target["probes"]:
            messages = p.get("messages") or [{"role": "user", "content": p["prompt"]}]
            probes.append(Probe(target["name"], p["kind"], tuple(messages), keys))
    return probes


def leaks(text: str, keywords: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(k in lowered for k in keywords)


def leaking_answers(probes, base: list[str], answers: list[str]) -> list[tuple[Probe, str]]:
    """(probe, answer) for every probe whose base-model answer leaks its target's keywords."""
    return [
        (p, a) for p, b, a in zip(probes, base, answers, strict=True) if leaks(b, p.leak_keywords)
    ]


def is_refusal(text: str) -> bool:
    """An honest non-answer: a refusal or an admission of not knowing."""
    lowered = text.strip().lower().replace("’", "'")
    return any(m in lowered for m in REFUSAL_MARKERS)


def registration_body(target: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "aliases", "keywords", "documents", "examples", "policy", "mode")
    return {k: target[k] for k in keys if k in target}
