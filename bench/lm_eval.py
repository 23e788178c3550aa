"""Score a causal LM in process (Hugging Face, CPU, float32): what RWKU measures of a weight edit.

Greedy answers through the chat template (the served model is a chat model), 5-shot MMLU by
the answer letter's logit (as lm-evaluation-harness does), fluency as RWKU measures it (n-gram
entropy of answers to open instructions), per-token losses for held-out texts and for
membership inference (loss and min-k% prob, AUC). The model itself is read through
`guard_server.unlearn.lm.LM`, the class early stopping reads adapters with during training.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from guard_server.unlearn.lm import LM


def min_k_score(logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-k% prob (Shi et al. 2024): minus the mean of the lowest k share of token log-probs;
    higher means less likely seen in training."""
    if not len(logprobs):
        return 0.0
    count = max(1, math.ceil(k * len(logprobs)))
    return float(-np.sort(logprobs)[:count].mean())


def auc(positive: list[float], negative: list[float]) -> float:
    """ROC AUC: the chance that a positive scores above a negative (ties count half)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def auc_interval(
    positive: list[float], negative: list[float], level: float = 0.95, resamples: int = 2000
) -> list[float]:
    """A percentile bootstrap interval for `auc` (scipy's, the two sides resampled apart,
    a fixed seed: a rerun on the same scores gives the same interval)."""
    from scipy.stats import bootstrap, mannwhitneyu

    def statistic(pos, neg, axis):  # Mann-Whitney U over its maximum is the ROC AUC
        return mannwhitneyu(pos, neg, axis=axis).statistic / (pos.shape[axis] * neg.shape[axis])

    result = bootstrap(
        (np.asarray(positive, float), np.asarray(negative, float)),
        statistic,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def mia(lm: LM, forget: list[str], retain: list[str]) -> dict[str, Any]:
    """How well a text's loss tells the forget texts from the retain texts (0.5: not at all).

    Positives are the forget texts: an AUC above 0.5 means they now look unseen; an edit that
    leaves them far more surprising than comparable text is itself detectable.
    """
    f, r = lm.token_logprobs(forget), lm.token_logprobs(retain)
    losses_f = [float(-lp.mean()) for lp in f]
    losses_r = [float(-lp.mean()) for lp in r]
    return {
        "mia_auc_loss": auc(losses_f, losses_r),
        "mia_auc_loss_ci": auc_interval(losses_f, losses_r),
        "mia_auc_mink": auc([min_k_score(lp) for lp in f], [min_k_score(lp) for lp in r]),
        "forget_mia_loss": float(np.mean(losses_f)),
        "retain_mia_loss": float(np.mean(losses_r)),
        "mia_texts": [len(forget), len(retain)],
    }


def ngram_entropy(text: str, ns: tuple[int, ...] = (2, 3), weights=(2 / 3, 4 / 3)) -> float:
    """ROME's and RWKU's fluency measure: weighted entropy (bits) of a text's word n-grams;
    repetitive or degenerate text scores low."""
    words = text.split()
    values = []
    for n in ns:
        grams = Counter(tuple(words[i : i + n]) for i in range(max(0, len(words) - n + 1)))
        total = sum(grams.values())
        freqs = np.asarray(list(grams.values()), dtype=float) / total if total else np.zeros(0)
        values.append(float(-(freqs * np.log2(freqs)).sum()) if total else 0.0)
    return float(np.average(values, weights=weights))
