"""Threshold calibration, the logistic classifier and the classifier registry."""

import numpy as np
import pytest

import classifiers  # noqa: F401 - fills the registry
from classifiers import base
from classifiers.base import (
    PromptClassifier,
    classifier_names,
    get_classifier,
    register_classifier,
)
from classifiers.logistic import ROW_BY_ROW, LogisticClassifier, calibrate

DIM = 16


def fired(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores >= threshold)) if scores.size else 0.0


@pytest.mark.parametrize(
    ("scores", "fpr", "expected"),
    [
        ([], 0.01, 0.5),
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 0.2, np.nextafter(0.8, np.inf)),
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 0.05, np.nextafter(1.0, np.inf)),
        ([0.3, 0.3, 0.3, 0.3], 0.5, np.nextafter(0.3, np.inf)),  # ties never fire together
        ([0.9, 0.5, 0.5, 0.1], 0.5, np.nextafter(0.5, np.inf)),
        ([0.2, 0.4], 1.0, 0.0),  # every negative may fire
    ],
)
def test_calibrate_values(scores, fpr, expected):
    assert calibrate(np.array(scores, dtype=np.float64), fpr) == pytest.approx(expected, abs=0)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000])
@pytest.mark.parametrize("fpr", [0.001, 0.01, 0.05, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("ties", [False, True])
def test_calibrate_bounds_the_false_positive_rate(n, fpr, ties):
    rng = np.random.default_rng(n)
    scores = rng.random(n)
    if ties:
        scores = np.round(scores, 1)
    threshold = calibrate(scores, fpr)
    assert fired(scores, threshold) <= fpr
    if not ties:  # distinct scores: exactly the allowed number of negatives fires
        assert int(np.sum(scores >= threshold)) == int(np.floor(fpr * n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_calibrate_threshold_is_just_above_the_first_disallowed_score(dtype):
    scores = np.array([0.25, 0.75, 0.5], dtype=dtype)
    threshold = calibrate(scores, 0.34)  # one of three may fire
    assert fired(scores, threshold) == pytest.approx(1 / 3)
    assert threshold > 0.5
    assert threshold < 0.5 + 1e-6


def gaussians(seed: int, n_pos: int = 300, n_neg: int = 3000, sep: float = 2.0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=DIM)
    mu /= np.linalg.norm(mu)

    def draw(n: int, sign: float) -> np.ndarray:
        return (rng.normal(size=(n, DIM)) + sign * sep * mu).astype(np.float32)

    return draw(n_pos, 1), draw(n_neg, -1), draw(20000, -1), draw(2000, 1)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_separates_and_keeps_fresh_fpr_near_target(fpr, seed):
    pos, neg, fresh_neg, fresh_pos = gaussians(seed)
    clf = LogisticClassifier(fpr=fpr, seed=seed)
    threshold = clf.fit("t", pos, neg)
    assert 0.0 < threshold < 1.0
    ids, neg_scores, thresholds = clf.scores(fresh_neg)
    _, pos_scores, _ = clf.scores(fresh_pos)
    assert ids == ["t"]
    assert thresholds[0] == np.float32(threshold)
    assert pos_scores.mean() > 0.9
    assert neg_scores.mean() < 0.1
    # Calibrated on a finite held-out sample: allow twice the target on fresh negatives.
    assert fired(neg_scores[:, 0], thresholds[0]) <= 2 * fpr
    assert fired(pos_scores[:, 0], thresholds[0]) >= 0.9


def test_fit_is_deterministic_for_a_seed():
    pos, neg, fresh, _ = gaussians(3)
    a, b = LogisticClassifier(seed=7), LogisticClassifier(seed=7)
    assert a.fit("t", pos, neg) == b.fit("t", pos, neg)
    np.testing.assert_array_equal(a.scores(fresh)[1], b.scores(fresh)[1])


def test_scores_shape_order_and_remove():
    clf = LogisticClassifier()
    empty_ids, empty, empty_thresholds = clf.scores(np.zeros((3, DIM), dtype=np.float32))
    assert empty_ids == [] and empty.shape == (3, 0) and empty_thresholds.size == 0

    data = {name: gaussians(seed, n_pos=50, n_neg=300) for seed, name in enumerate("abc")}
    fitted = {name: clf.fit(name, pos, neg) for name, (pos, neg, _, _) in data.items()}
    batch = np.vstack([data["a"][3][:4], data["b"][3][:5]])
    ids, scores, thresholds = clf.scores(batch)
    assert ids == ["a", "b", "c"]
    assert scores.shape == (9, 3)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_array_equal(thresholds, np.float32([fitted[i] for i in ids]))

    clf.remove("b")
    clf.remove("missing")  # no-op
    ids2, scores2, thresholds2 = clf.scores(batch)
    assert ids2 == ["a", "c"]
    assert scores2.shape == (9, 2)
    np.testing.assert_array_equal(scores2, scores[:, [0, 2]])
    np.testing.assert_array_equal(thresholds2, thresholds[[0, 2]])

    clf.fit("a", *data["a"][:2])  # refitting replaces the target's row
    ids_refit, scores_refit, _ = clf.scores(batch)
    assert sorted(ids_refit) == ["a", "c"]
    np.testing.assert_array_equal(scores_refit[:, ids_refit.index("a")], scores[:, 0])

    clf.remove("a")
    clf.remove("c")
    ids3, scores3, thresholds3 = clf.scores(batch)
    assert ids3 == [] and scores3.shape == (9, 0) and thresholds3.size == 0


@pytest.mark.parametrize("rows", [0, 1, 3, ROW_BY_ROW - 1, ROW_BY_ROW, 40])
def test_scores_row_by_row_agree_with_one_product(rows):
    clf = LogisticClassifier()
    for seed, name in enumerate("abc"):
        clf.fit(name, *gaussians(seed, n_pos=50, n_neg=300)[:2])
    batch = np.random.default_rng(7).standard_normal((rows, DIM)).astype(np.float32)
    _, scores, _ = clf.scores(batch)
    _, w_t, bias, _ = clf._pack()
    assert scores.shape == (rows, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(batch @ w_t + bias))), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fpr": 0.0}, "fpr"),
        ({"fpr": 1.0}, "fpr"),
        ({"fpr": -0.1}, "fpr"),
        ({"fpr": 1.5}, "fpr"),
        ({"holdout": 0.0}, "holdout"),
        ({"holdout": 1.0}, "holdout"),
    ],
)
def test_validate_rejects_out_of_range_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LogisticClassifier(**kwargs)
    clf = LogisticClassifier()
    clf.validate()
    for key, value in kwargs.items():
        setattr(clf, key, value)
    with pytest.raises(ValueError, match=field):
        clf.validate()


@pytest.mark.parametrize("fpr", [1e-6, 0.01, 0.5, 0.999])
def test_validate_accepts_open_interval(fpr):
    LogisticClassifier(fpr=fpr).validate()


@pytest.fixture
def registry():
    saved = dict(base._REGISTRY)
    yield base._REGISTRY
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)


class _Dummy(PromptClassifier):
    def fit(self, target_id, positives, negatives):
        return 0.5

    def remove(self, target_id):
        return None

    def scores(self, embeddings):
        return [], np.zeros((len(embeddings), 0)), np.zeros(0)


def test_logistic_is_registered():
    assert "logistic" in classifier_names()
    assert get_classifier("logistic") is LogisticClassifier
    assert LogisticClassifier.name == "logistic"


def test_register_and_get_a_new_classifier(registry):
    cls = type("Fresh", (_Dummy,), {})
    assert register_classifier("fresh test")(cls) is cls
    assert cls.name == "fresh test"
    assert get_classifier("fresh test") is cls
    assert classifier_names() == sorted(classifier_names())
    assert "fresh test" in classifier_names()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("logistic", "already registered"),
        ("Logistic", "lower-case"),
        ("MyClassifier", "lower-case"),
        ("", "non-empty"),
    ],
)
def test_register_rejects_bad_or_duplicate_names(registry, name, message):
    before = dict(registry)
    cls = type("Bad", (_Dummy,), {})
    with pytest.raises(ValueError, match=message):
        register_classifier(name)(cls)
    assert registry == before
    assert cls.name == ""


def test_register_rejects_a_second_registration_of_a_new_name(registry):
    register_classifier("once")(type("One", (_Dummy,), {}))
    with pytest.raises(ValueError, match="already registered"):
        register_classifier("once")(type("Two", (_Dummy,), {}))
    assert get_classifier("once").__name__ == "One"


@pytest.mark.parametrize("name", ["nope", "Logistic", ""])
def test_get_unknown_classifier_names_the_known_ones(name):
    with pytest.raises(ValueError, match="unknown classifier") as info:
        get_classifier(name)
    assert repr(name) in str(info.value)
    assert str(sorted(classifier_names())) in str(info.value)
    assert "'logistic'" in str(info.value)


@pytest.mark.parametrize("seed", range(30))
def test_float64_embeddings_keep_the_stated_false_positive_rate(seed):
    rng = np.random.default_rng(seed)
    pos = rng.normal(1.0, 1.0, (60, 8))
    neg = rng.normal(-1.0, 1.0, (400, 8))
    clf = LogisticClassifier(fpr=0.05, seed=seed)
    clf.fit("t", pos, neg)
    # the held-out negatives are the first 30% of the classifier's permutation
    order = np.random.default_rng(seed).permutation(len(neg))
    held = neg[order[: int(len(neg) * 0.3)]]
    _, scores, thresholds = clf.scores(held)
    assert (scores[:, 0] >= thresholds[0]).mean() <= 0.05


def test_train_negatives_train_but_never_calibrate(monkeypatch):
    """Contrast prompts share the positives' template (mu) but not their subject (nu)."""
    rng = np.random.default_rng(5)
    mu, nu = np.eye(DIM)[0] * 2.0, np.eye(DIM)[1] * 6.0

    def draw(n: int, centre: np.ndarray) -> np.ndarray:
        return (rng.normal(size=(n, DIM)) + centre).astype(np.float32)

    pos, neg = draw(200, mu), draw(1000, -mu)
    contrast, fresh_contrast, fresh_neg = draw(300, mu + nu), draw(2000, mu + nu), draw(5000, -mu)
    calibrated_on: list[int] = []
    real_calibrate = calibrate

    def spy(scores: np.ndarray, fpr: float) -> float:
        calibrated_on.append(len(scores))
        return real_calibrate(scores, fpr)

    monkeypatch.setattr("classifiers.logistic.calibrate", spy)
    plain, contrasted = LogisticClassifier(seed=1), LogisticClassifier(seed=1)
    plain.fit("t", pos, neg)
    contrasted.fit("t", pos, neg, train_negatives=contrast)
    assert calibrated_on == [int(len(neg) * 0.3)] * 2  # the held-out share of `neg` only

    def fire_rate(clf: LogisticClassifier, x: np.ndarray) -> float:
        _, scores, thresholds = clf.scores(x)
        return fired(scores[:, 0], thresholds[0])

    assert fire_rate(plain, fresh_contrast) > 0.5
    assert fire_rate(contrasted, fresh_contrast) < 0.05
    assert fire_rate(contrasted, fresh_neg) <= 0.02
    assert fire_rate(contrasted, draw(2000, mu)) >= 0.75
