"""The prompt-classifier extension point: one small base class and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Match:
    """Detection evidence that a request asks for one forget target."""

    target_id: str
    version: int
    score: float
    evidence: str
    policy: str = "refuse"
    name: str = ""  # the target's registered name, for people reading metrics and reports


class PromptClassifier(ABC):
    """Scores embedded prompts against every registered target at once.

    `fit` trains one target from its positive and negative prompt embeddings and returns the
    threshold it calibrated on held-out `negatives`. `train_negatives` (templated contrast
    prompts) only train: they are easier than real prompts, so calibrating on them too would
    set the threshold too low (measured: bench FPR 7.2 % instead of 1.4 %). `scores` maps a
    batch of embeddings to (n, targets) scores in [0, 1] and returns each target's threshold
    beside them (a score >= threshold fires).
    """

    name: str = ""

    @abstractmethod
    def fit(
        self,
        target_id: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        train_negatives: np.ndarray | None = None,
    ) -> float: ...

    @abstractmethod
    def remove(self, target_id: str) -> None: ...

    @abstractmethod
    def scores(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]: ...

    def validate(self) -> None:
        """Raise ValueError when the classifier's settings are inconsistent."""
        return None


_REGISTRY: dict[str, type[PromptClassifier]] = {}


def register_classifier(name: str):
    """Class decorator: make a classifier available under `name` (lower-case, unique)."""

    def wrap(cls: type[PromptClassifier]) -> type[PromptClassifier]:
        key = name.lower()
        if key != name or not key:
            raise ValueError(f"classifier names are lower-case and non-empty, got {name!r}")
        if key in _REGISTRY:
            raise ValueError(f"classifier {name!r} is already registered")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return wrap


def get_classifier(name: str) -> type[PromptClassifier]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown classifier {name!r}; known: {sorted(_REGISTRY)}") from None


def classifier_names() -> list[str]:
    return sorted(_REGISTRY)
