"""Per-target logistic regression over sentence embeddings, calibrated to a target FPR."""

from __future__ import annotations

import numpy as np

from classifiers.base import PromptClassifier, register_classifier

DEFAULT_FPR = 0.01
SCORE_MARGIN = 1e-5
# OpenBLAS multiplies a few rows by a wide matrix far slower as one product than row by row
# (10,000 targets, one BLAS thread, measured: 1 row 0.27 ms; 3 rows 3.5 ms as one product,
# 0.82 ms row by row; even at 16 rows). A request has a handful of rows.
ROW_BY_ROW = 16


def calibrate(negative_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose false-positive rate on the held-out negatives is <= fpr."""
    if negative_scores.size == 0:
        return 0.5
    ordered = np.sort(negative_scores)[::-1]
    allowed = int(np.floor(fpr * ordered.size))  # negatives allowed at or above threshold
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < ordered.size else 0.0


def _train(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """L2-regularised logistic regression with balanced classes (scikit-learn, L-BFGS);
    returns [w, b]. `l2` weighs the penalty against the mean loss of each class, so it means
    the same whatever the number of examples."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / (l2 * len(y)), class_weight="balanced", max_iter=1000)
    model.fit(x.astype(np.float64), y)
    return np.r_[model.coef_[0], model.intercept_].astype(np.float32)


@register_classifier("logistic")
class LogisticClassifier(PromptClassifier):
    """One weight row per target: scoring every target is a single matrix product."""

    def __init__(self, fpr: float = DEFAULT_FPR, holdout: float = 0.3, seed: int = 0):
        self.fpr = fpr
        self.holdout = holdout
        self.seed = seed
        self.validate()
        self._rows: dict[str, tuple[np.ndarray, float]] = {}  # target -> ([w, b], threshold)
        self._packed: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None = None

    def validate(self) -> None:
        if not 0.0 < self.fpr < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {self.fpr}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")

    def fit(
        self,
        target_id: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        train_negatives: np.ndarray | None = None,
    ) -> float:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(negatives))
        cut = max(1, int(len(negatives) * self.holdout))
        held, train_neg = negatives[order[:cut]], negatives[order[cut:]]
        if train_negatives is not None:
            train_neg = np.vstack([train_neg, train_negatives])
        x = np.vstack([positives, train_neg])
        y = np.r_[np.ones(len(positives)), np.zeros(len(train_neg))]
        w = _train(x, y)
        held_scores = _sigmoid(held @ w[:-1] + w[-1])
        # Queries are scored in float32 by a different BLAS path than this float64 calibration:
        # a margin far above their rounding gap keeps the boundary negative below threshold.
        threshold = np.float32(calibrate(held_scores, self.fpr) + SCORE_MARGIN)
        threshold = float(threshold)  # stored as float32, so return exactly what is used
        self._rows[target_id] = (w, threshold)
        self._packed = None
        return threshold

    def remove(self, target_id: str) -> None:
        if self._rows.pop(target_id, None) is not None:
            self._packed = None

    def _pack(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        # Packed lazily, once per change: registering N targets costs O(N), not O(N^2).
        if self._packed is None:
            ids = list(self._rows)
            dim = next(iter(self._rows.values()))[0].shape[0] if ids else 1
            weights = np.vstack([self._rows[i][0] for i in ids]) if ids else np.zeros((0, dim))
            thresholds = np.array([self._rows[i][1] for i in ids], dtype=np.float32)
            # W^T contiguous once here: slicing it per query would copy (targets x dim) floats.
            w_t = np.ascontiguousarray(weights[:, :-1].T, dtype=np.float32)
            self._packed = (ids, w_t, weights[:, -1].astype(np.float32), thresholds)
        return self._packed

    def scores(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        ids, w_t, bias, thresholds = self._pack()
        if not ids:
            return [], np.zeros((len(embeddings), 0), dtype=np.float32), thresholds
        x = embeddings.astype(np.float32)
        z = np.vstack([row @ w_t for row in x]) if 0 < len(x) < ROW_BY_ROW else x @ w_t
        return ids, _sigmoid(z + bias), thresholds


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
