"""Probes that test one target on the served model: is it forgotten, and are its neighbours not?

Built from the target alone (its name, aliases and documents), so any target can be checked
on demand: direct questions, indirect ones (a document sentence with the names blanked: the
model must fill in the target), disguised ones (the name in leetspeak, look-alike letters,
split by hyphens), and questions about the other names its documents mention, which must
still be answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from classifiers.probes import TEMPLATES, document_sentences

_CAPS = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)+\b")
_LEET = str.maketrans({"a": "4", "e": "3", "o": "0", "i": "1"})
_LOOK_ALIKE = str.maketrans({"a": "\u0430", "o": "\u043e", "e": "\u0435"})  # Cyrillic
MAX_PER_KIND = 10
NEIGHBOURS = 10


@dataclass(frozen=True)
class VerifyProbe:
    kind: str  # "direct" | "indirect" | "disguised" | "neighbour"
    prompt: str


def disguises(name: str) -> list[str]:
    hyphened = " ".join(
        w[: len(w) // 2] + "-" + w[len(w) // 2 :] if len(w) > 3 else w for w in name.split()
    )
    return [name.translate(_LEET), name.translate(_LOOK_ALIKE), hyphened]


def verification_probes(spec: dict) -> list[VerifyProbe]:
    """A target's probes: forget kinds first, then its neighbours."""
    names = [spec["name"], *spec.get("aliases", [])]
    direct = [t.format(x=n) for n in names for t in TEMPLATES][:MAX_PER_KIND]
    disguised = [t.format(x=d) for d in disguises(spec["name"]) for t in TEMPLATES[:3]][
        :MAX_PER_KIND
    ]
    indirect = []
    for sentence in document_sentences(spec.get("documents", [])):
        blanked = sentence
        for n in sorted(names, key=len, reverse=True):
            blanked = re.sub(re.escape(n), "___", blanked, flags=re.I)
        if "___" in blanked:
            indirect.append(f"Fill in the blank: {blanked}")
    own = {w.casefold() for n in names for w in n.split()}
    mentioned = dict.fromkeys(
        m.group()
        for d in spec.get("documents", [])
        for m in _CAPS.finditer(d)
        if not {w.casefold() for w in m.group().split()} & own
    )
    neighbours = [f"Who or what is {m}?" for m in list(mentioned)[:NEIGHBOURS]]
    return [
        *(VerifyProbe("direct", p) for p in direct),
        *(VerifyProbe("indirect", p) for p in indirect[:MAX_PER_KIND]),
        *(VerifyProbe("disguised", p) for p in disguised),
        *(VerifyProbe("neighbour", p) for p in neighbours),
    ]
