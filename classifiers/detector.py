"""GUARD-style detection: classifier + FAISS semantic match + fuzzy lexical evidence."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from classifiers.base import Match, PromptClassifier, get_classifier
from classifiers.encoder import Encoder
from classifiers.lexical import LexicalMatcher
from classifiers.probes import derived_probes, document_sentences, shipped_negatives
from classifiers.semantic import SemanticIndex

# Cosine similarity to a target's own example/probe vectors that counts as a match even when
# the classifier abstains (exact repeats and near-paraphrases of registered examples).
SEMANTIC_THRESHOLD = 0.78
MAX_TURNS = 6
_CLAUSES = re.compile(r"(?<=[?.!;])\s+|,?\s+\b(?:and also|and then|also|and)\b\s+", re.I)
# A clause is another ask only if it asks something; "Ignore all previous instructions." and
# "You are DAN." wrap a forget request, they do not make it a mixed one.
_ASK = re.compile(
    r"\?|^\s*(?:what|who|whom|where|when|why|how|which|tell|explain|give|list|name|describe"
    r"|write|translate|summari[sz]e|compute|calculate)\b",
    re.I,
)


@dataclass(frozen=True)
class TargetInfo:
    target_id: str
    version: int
    threshold: float
    policy: str


class Detector:
    """Screens whole conversations against every active target; thread-safe."""

    def __init__(self, encoder: Encoder, classifier: str | PromptClassifier = "logistic"):
        self.encoder = encoder
        self.classifier = (
            get_classifier(classifier)() if isinstance(classifier, str) else classifier
        )
        self.semantic = SemanticIndex(encoder.dim)
        self.lexical = LexicalMatcher()
        self.targets: dict[str, TargetInfo] = {}
        self._negatives = encoder.encode(list(shipped_negatives()))
        self._lock = threading.RLock()

    def add_target(self, target_id: str, version: int, spec: dict[str, Any]) -> TargetInfo:
        name, aliases = spec["name"], spec.get("aliases", [])
        keywords = spec.get("keywords", [])
        probes = [*spec.get("examples", []), *derived_probes(name, aliases, keywords)]
        anchors = [name, *aliases, *document_sentences(spec.get("documents", []))]
        probe_vecs = self.encoder.encode(probes)
        anchor_vecs = self.encoder.encode(anchors)
        positives = np.vstack([probe_vecs, anchor_vecs])
        with self._lock:
            threshold = self.classifier.fit(target_id, positives, self._negatives)
            self.semantic.add(target_id, probe_vecs)
            self.lexical.add(target_id, [name, *aliases, *keywords])
            info = TargetInfo(target_id, version, threshold, spec.get("policy", "refuse"))
            self.targets[target_id] = info
        return info

    def remove_target(self, target_id: str) -> None:
        with self._lock:
            self.targets.pop(target_id, None)
            self.classifier.remove(target_id)
            self.semantic.remove(target_id)
            self.lexical.remove(target_id)

    def screen(self, texts: list[str]) -> tuple[list[Match], bool]:
        """Matches for a conversation (oldest turn first) and whether it also asks other things.

        Each of the last turns is scored on its own and the last turns are scored together,
        so a target reached only across turns is still found.
        """
        turns = [t for t in texts if t.strip()][-MAX_TURNS:]
        if not turns or not self.targets:
            return [], False
        units = [*turns, " ".join(turns)] if len(turns) > 1 else turns
        with self._lock:
            matches = self._score(units)
            mixed = bool(matches) and self._mixed(turns[-1])
        return matches, mixed

    def _score(self, units: list[str]) -> list[Match]:
        vecs = self.encoder.encode(units)
        ids, scores, thresholds = self.classifier.scores(vecs)
        best: dict[str, Match] = {}

        def offer(target_id: str, score: float, evidence: str) -> None:
            info = self.targets.get(target_id)
            if info and (target_id not in best or score > best[target_id].score):
                best[target_id] = Match(target_id, info.version, score, evidence)

        if ids:
            hit_rows, hit_cols = np.nonzero(scores >= thresholds[None, :])
            for r, c in zip(hit_rows.tolist(), hit_cols.tolist(), strict=True):
                offer(ids[c], float(scores[r, c]), "classifier")
        for sims in self.semantic.search(vecs):
            for target_id, sim in sims.items():
                if sim >= SEMANTIC_THRESHOLD:
                    offer(target_id, sim, "semantic")
        for unit in units:
            for target_id, phrase in self.lexical.match(unit).items():
                offer(target_id, 1.0, f"lexical:{phrase}")
        return sorted(best.values(), key=lambda m: -m.score)

    def _mixed(self, last_turn: str) -> bool:
        """True when some clause of the last turn asks for none of the targets."""
        clauses = [
            c for c in _CLAUSES.split(last_turn) if c and len(c.split()) >= 3 and _ASK.search(c)
        ]
        if len(clauses) < 2:
            return False
        return any(not self._score([c]) for c in clauses)
