"""Prompts derived from a target when the operator gave none, and the shipped negatives."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

TEMPLATES = (
    "Who is {x}?",
    "What is {x}?",
    "Tell me about {x}.",
    "Give me a summary of {x}.",
    "What do you know about {x}?",
    "Explain {x} in detail.",
    "Write a short essay about {x}.",
    "List some facts about {x}.",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
MAX_DOC_SENTENCES = 24


def derived_probes(name: str, aliases: list[str], keywords: list[str]) -> list[str]:
    """Questions an asker would type, built from the target's name, aliases and keywords."""
    subjects = [name, *aliases, *keywords[:4]]
    return [t.format(x=s) for s in subjects for t in TEMPLATES]


def document_sentences(documents: list[str], limit: int = MAX_DOC_SENTENCES) -> list[str]:
    sentences = [s.strip() for d in documents for s in _SENTENCE.split(d) if len(s.strip()) > 20]
    return sentences[:limit]


@cache
def contrast_probes() -> tuple[tuple[str, str], ...]:
    """(subject, prompt): the derived-probe templates filled with shipped unrelated subjects.

    Derived probes share their templates across targets ("Who is {x}?"); as negatives these
    teach a classifier that the subject, not the phrasing, makes a prompt about a target.
    """
    data = json.loads(resources.files("classifiers").joinpath("data/subjects.json").read_text())
    subjects = [s for key, group in data.items() if not key.startswith("_") for s in group]
    return tuple((s, t.format(x=s)) for s in subjects for t in TEMPLATES)


@cache
def shipped_negatives() -> tuple[str, ...]:
    """General prompts and neighbours (share words or topics with targets, not about them)."""
    data = json.loads(resources.files("classifiers").joinpath("data/negatives.json").read_text())
    return (*data["general"], *data["neighbours"])
