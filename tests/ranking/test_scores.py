"""Each score against a naive reference computation, plus properties any useful score must have."""

import math
from collections import Counter

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from transferkit.errors import ConfigError, UnknownNameError
from transferkit.ranking import (
    ScoreInputs,
    hscore,
    leep,
    logme,
    nce,
    resolve_methods,
    sfda,
    transferability_scores,
)
from transferkit.ranking._linalg import thin_svd
from transferkit.ranking.leep import softmax
from transferkit.ranking.logme import MAX_BETA, Spectrum, Target, log_evidence, maximize_evidence
from transferkit.ranking.sfda import adaptive_shrinkage, lda_probabilities


def _task(num_samples: int, num_features: int, num_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_samples)
    features = rng.normal(size=(num_samples, num_features))
    features[:, :num_classes] += 1.5 * np.eye(num_classes)[labels]
    return features, labels


# LogME ---------------------------------------------------------------------------------------------


def naive_log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """The evidence of the Bayesian linear model written out with a D x D solve and a determinant."""
    n, d = features.shape
    precision = alpha * np.eye(d) + beta * features.T @ features
    mean = beta * np.linalg.solve(precision, features.T @ target)
    _, log_det = np.linalg.slogdet(precision)
    residual = features @ mean - target
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual @ residual
        - alpha / 2 * mean @ mean
        - log_det / 2
    )


def naive_max_evidence(features: np.ndarray, target: np.ndarray) -> float:
    """Grid search over log alpha and log beta, then a local simplex search from the best grid point."""
    grid = np.linspace(-8, 8, 41)
    values = {(a, b): naive_log_evidence(features, target, 10**a, 10**b) for a in grid for b in grid}
    start = max(values, key=values.__getitem__)
    result = minimize(
        lambda p: -naive_log_evidence(features, target, 10 ** p[0], 10 ** p[1]),
        np.array(start),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000},
    )
    return float(-result.fun)


@pytest.mark.parametrize(("num_samples", "num_features"), [(60, 8), (15, 25)])
def test_logme_evidence_matches_the_direct_formula(num_samples: int, num_features: int) -> None:
    features, labels = _task(num_samples, num_features)
    target = (labels == 1).astype(float)
    spectrum = Spectrum.of(features)
    for alpha, beta in [(1.0, 1.0), (0.01, 30.0), (50.0, 0.2)]:
        ours = log_evidence(spectrum, Target.of(spectrum, target), alpha, beta)
        assert ours == pytest.approx(naive_log_evidence(features, target, alpha, beta), rel=1e-9)


@pytest.mark.parametrize(("num_samples", "num_features"), [(60, 8), (15, 25)])
def test_logme_fixed_point_finds_the_maximum_a_naive_search_finds(
    num_samples: int, num_features: int
) -> None:
    features, labels = _task(num_samples, num_features)
    target = (labels == 0).astype(float)
    spectrum = Spectrum.of(features)
    alpha, beta = maximize_evidence(spectrum, Target.of(spectrum, target))
    reference = naive_max_evidence(features, target)
    assert naive_log_evidence(features, target, alpha, beta) == pytest.approx(reference, abs=1e-6)


def test_logme_is_the_mean_over_classes_of_the_maximum_evidence_per_image() -> None:
    features, labels = _task(60, 8)
    expected = np.mean([naive_max_evidence(features, (labels == c).astype(float)) for c in range(3)]) / 60
    assert logme(features, labels) == pytest.approx(expected, abs=1e-7)


def test_logme_stays_finite_where_the_features_explain_every_label_exactly() -> None:
    # every direction well determined, one image more than directions, nothing outside their span: the
    # evidence grows without bound with beta (a photo folder's features did this, and beta**2 overflowed)
    spectrum = Spectrum(np.zeros((11, 10)), np.ones(10), num_samples=11, num_features=1280)
    target = Target(np.full(10, 0.3), outside=0.0)
    alpha, beta = maximize_evidence(spectrum, target)
    assert math.isfinite(alpha) and math.isfinite(log_evidence(spectrum, target, alpha, beta))
    assert beta == MAX_BETA  # at the ceiling, where it had run past any float


# H-score -------------------------------------------------------------------------------------------


def class_mean_per_image(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    means = {c: features[labels == c].mean(axis=0) for c in np.unique(labels)}
    return np.stack([means[c] for c in labels])


def test_hscore_without_shrinkage_is_the_pseudo_inverse_formula() -> None:
    features, labels = _task(80, 6)
    between = np.cov(class_mean_per_image(features, labels), rowvar=False)
    reference = np.trace(np.linalg.pinv(np.cov(features, rowvar=False)) @ between)
    assert hscore(features, labels, shrinkage=0.0) == pytest.approx(reference, rel=1e-9)


def test_hscore_shrinks_the_covariance_as_ledoit_wolf_does() -> None:
    features, labels = _task(30, 40)
    fitted = LedoitWolf().fit(features)
    between = np.cov(class_mean_per_image(features, labels), rowvar=False, bias=True)
    reference = np.trace(np.linalg.inv(fitted.covariance_) @ ((1 - fitted.shrinkage_) * between))
    assert hscore(features, labels) == pytest.approx(reference, rel=1e-8)


def test_plain_hscore_saturates_with_fewer_images_than_dimensions_and_shrinkage_does_not() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 40)
    noise = rng.normal(size=(40, 100))
    assert hscore(noise, labels, shrinkage=0.0) == pytest.approx(3.0, abs=1e-6)  # the reason to shrink
    assert hscore(noise, labels) < 0.5


def test_plain_hscore_ignores_an_invertible_linear_map_of_the_features() -> None:
    features, labels = _task(80, 6)
    mixing = np.random.default_rng(2).normal(size=(6, 6))
    mapped = features @ mixing + 5.0
    assert hscore(mapped, labels, shrinkage=0.0) == pytest.approx(hscore(features, labels, shrinkage=0.0))


# LEEP and NCE --------------------------------------------------------------------------------------


def naive_leep(theta: np.ndarray, labels: np.ndarray) -> float:
    n, source_classes = theta.shape
    joint: Counter[tuple[int, int]] = Counter()
    for i in range(n):
        for z in range(source_classes):
            joint[int(labels[i]), z] += theta[i, z] / n
    marginal = [sum(joint[y, z] for y in set(labels.tolist())) for z in range(source_classes)]
    total = 0.0
    for i in range(n):
        total += math.log(
            sum(joint[int(labels[i]), z] / marginal[z] * theta[i, z] for z in range(source_classes))
        )
    return total / n


def naive_nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    n = len(labels)
    pairs = Counter(zip(labels.tolist(), source_labels.tolist(), strict=True))
    sources = Counter(source_labels.tolist())
    return sum(count / n * math.log(count / sources[z]) for (_, z), count in pairs.items())


def test_leep_matches_the_formula_written_as_loops() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 50)
    theta = softmax(rng.normal(size=(50, 7)) + 2 * np.eye(7)[labels * 2])
    assert leep(theta, labels) == pytest.approx(naive_leep(theta, labels), rel=1e-10)


def test_nce_matches_the_conditional_entropy_written_as_counts() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, 80)
    source = np.where(rng.random(80) < 0.6, labels + 3, rng.integers(0, 9, 80))
    assert nce(source, labels) == pytest.approx(naive_nce(source, labels), rel=1e-10)


def test_uninformative_source_predictions_give_minus_the_label_entropy() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    entropy = -sum(p * math.log(p) for p in (3 / 6, 2 / 6, 1 / 6))
    assert leep(np.full((6, 5), 0.2), labels) == pytest.approx(-entropy)
    assert nce(np.zeros(6, dtype=int), labels) == pytest.approx(-entropy)


def test_nce_is_zero_when_the_source_class_decides_the_target_class() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 2])
    assert nce(labels * 3 + 1, labels) == pytest.approx(0.0)


def test_leep_does_not_depend_on_the_order_of_the_source_classes() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 40)
    theta = softmax(rng.normal(size=(40, 6)) + 2 * np.eye(6)[labels])
    assert leep(theta[:, rng.permutation(6)], labels) == pytest.approx(leep(theta, labels))


# SFDA ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_classes", "shrinkage"), [(2, 0.3), (4, 1e-3)])
def test_sfda_discriminant_is_shrunk_lda_as_scikit_learn_fits_it(num_classes: int, shrinkage: float) -> None:
    features, labels = _task(80, 6, num_classes, seed=7)
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(features, labels)
    np.testing.assert_allclose(
        lda_probabilities(features, labels, shrinkage), reference.predict_proba(features), atol=1e-10
    )


def test_sfda_is_the_second_discriminant_after_confmix_written_out() -> None:
    features, labels = _task(50, 5, 3, seed=8)
    centred = features - features.mean(axis=0)
    strength = adaptive_shrinkage(centred, labels)
    first = lda_probabilities(centred, labels, strength)
    means = np.stack([centred[labels == c].mean(axis=0) for c in range(3)])
    mixed = centred.copy()
    for i, label in enumerate(labels):
        sure = softmax(first[i : i + 1])[0, label]  # the paper softens the probabilities once more
        others = np.mean([means[c] for c in range(3) if c != label], axis=0)
        mixed[i] = sure * centred[i] + (1 - sure) * others
    second = lda_probabilities(mixed, labels, strength)
    expected = np.mean([second[i, label] for i, label in enumerate(labels)])
    assert sfda(features, labels) == pytest.approx(expected, rel=1e-12)


def test_sfda_shrinks_less_as_the_within_class_spread_grows() -> None:
    features, labels = _task(400, 4, 3, seed=9)
    features *= np.array([3.0, 1.0, 0.3, 0.1])  # not isotropic, so Ledoit-Wolf keeps some of the estimate
    small, large = adaptive_shrinkage(0.1 * features, labels), adaptive_shrinkage(features, labels)
    assert 0 < large < small < 1


def test_sfda_shrinks_enough_not_to_saturate_with_fewer_images_than_dimensions() -> None:
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(4), 10)
    noise = rng.normal(size=(40, 50))
    assert sfda(noise, labels, shrinkage=2e-9) == pytest.approx(1.0)  # the paper's strength for it
    assert sfda(noise, labels) < 0.65  # 4 classes, no signal


def test_sfda_is_a_mean_probability_and_needs_two_classes() -> None:
    features, labels = _task(40, 6, 3, seed=10)
    assert 1 / 3 < sfda(features, labels) <= 1
    with pytest.raises(ValueError, match="at least two classes"):
        sfda(features, np.zeros(40, dtype=int))


# Every registered score ----------------------------------------------------------------------------


def _inputs(signal: float, num_samples: int, num_features: int, seed: int = 0) -> ScoreInputs:
    """Features and source predictions that carry the labels with strength `signal` (0: pure noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, num_samples)
    features = rng.normal(size=(num_samples, num_features))
    features[:, :4] += signal * np.eye(4)[labels]
    # Each target class is one of three source classes: a coarse-to-fine relation, as ImageNet to a task.
    source = labels * 3 + rng.integers(0, 3, num_samples)
    logits = rng.normal(size=(num_samples, 12)) + signal * np.eye(12)[source]
    return ScoreInputs(features, labels, 4, softmax(logits))


@pytest.mark.parametrize("name", transferability_scores.names())
@pytest.mark.parametrize(("num_samples", "num_features"), [(300, 16), (60, 120)])
def test_stronger_label_signal_scores_higher_for_every_score(
    name: str, num_samples: int, num_features: int
) -> None:
    score = transferability_scores.get(name)
    values = [score.compute(_inputs(signal, num_samples, num_features)) for signal in (0.0, 1.0, 3.0)]
    assert values[0] < values[1] < values[2], values


@pytest.mark.parametrize("name", transferability_scores.names())
def test_renaming_the_target_classes_changes_no_score(name: str) -> None:
    inputs = _inputs(1.0, 120, 16)
    renamed = ScoreInputs(inputs.features, (inputs.labels + 1) % 4, 4, inputs.source_probabilities)
    score = transferability_scores.get(name)
    assert score.compute(renamed) == pytest.approx(score.compute(inputs))


def test_source_scores_say_which_models_they_need() -> None:
    without_head = ScoreInputs(np.zeros((4, 2)), np.array([0, 1, 0, 1]), 2)
    assert not transferability_scores.get("leep").applies_to(without_head)
    assert transferability_scores.get("logme").applies_to(without_head)
    with pytest.raises(ValueError, match="no source head"):
        transferability_scores.get("nce").compute(without_head)


def test_methods_resolve_by_name_and_all() -> None:
    assert resolve_methods("all") == ["hscore", "knn", "leep", "logme", "nce", "sfda"]
    assert resolve_methods(["nce", "logme", "nce"]) == ["nce", "logme"]
    with pytest.raises(UnknownNameError, match="Did you mean 'logme'"):
        resolve_methods(["logmee"])
    with pytest.raises(ConfigError, match="No transferability score"):
        resolve_methods([])


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_thin_svd_reconstructs_and_matches_lapack(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(6)
    matrix = rng.normal(size=(shape[0], 5)) @ rng.normal(size=(5, shape[1]))  # rank 5
    left, singular, right = thin_svd(matrix)
    assert len(singular) == 5  # the zero singular values are dropped
    np.testing.assert_allclose(left @ np.diag(singular) @ right, matrix, atol=1e-10)
    np.testing.assert_allclose(left.T @ left, np.eye(5), atol=1e-10)
    np.testing.assert_allclose(right @ right.T, np.eye(5), atol=1e-10)
    np.testing.assert_allclose(singular, np.linalg.svd(matrix, compute_uv=False)[:5], rtol=1e-10)
