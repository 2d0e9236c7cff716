"""Calibration: ECE and reliability bins against hand-made sets, temperature scaling against a known T."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from transferkit.evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    tempered_probabilities,
)


def _calibrated_set(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from the predicted probabilities themselves: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(4, 0.5), size=num_samples)
    return probs, _draw_labels(probs, rng)


def _draw_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row, drawn with the row's probabilities."""
    drawn = (probs.cumsum(axis=1) < rng.random((len(probs), 1))).sum(axis=1)
    return np.minimum(drawn, probs.shape[1] - 1)  # a cumulative sum rounded just below 1


def test_ece_is_small_for_a_calibrated_set_and_large_for_an_over_confident_one() -> None:
    probs, labels = _calibrated_set(20_000, seed=0)
    assert expected_calibration_error(probs, labels) < 0.02
    sharpened = softmax(np.log(probs) * 4, axis=1)  # same argmax, far more confident
    assert expected_calibration_error(sharpened, labels) > 0.15


def test_ece_by_hand() -> None:
    # Two bins: confidence 0.9 (2 images, 1 right) and 0.6 (2 images, both right).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    bins = reliability_bins(probs, labels)
    assert [(b["count"], b["confidence"], b["accuracy"]) for b in bins] == [
        (2, pytest.approx(0.6), 1.0),
        (2, pytest.approx(0.9), 0.5),
    ]
    assert bins[0]["lower"] <= 0.6 < bins[0]["upper"]


def test_reliability_bins_cover_every_image_and_put_certainty_in_the_last_bin() -> None:
    probs, labels = _calibrated_set(500, seed=1)
    probs[0] = [1.0, 0.0, 0.0, 0.0]
    bins = reliability_bins(probs, labels, bins=15)
    assert sum(b["count"] for b in bins) == 500
    assert bins[-1]["upper"] == 1.0
    assert all(b["count"] > 0 for b in bins)
    assert all(b["lower"] <= b["confidence"] <= b["upper"] for b in bins)


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature(temperature: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    probs = softmax(logits / temperature, axis=1)
    labels = _draw_labels(probs, rng)
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.1)


def test_fit_temperature_averages_views_like_the_predictor() -> None:
    rng = np.random.default_rng(1)
    views = rng.normal(0, 3, size=(2, 3000, 4))
    probs = tempered_probabilities(views, 2.0)
    np.testing.assert_allclose(probs, softmax(views / 2.0, axis=2).mean(axis=0))
    labels = _draw_labels(probs, rng)
    assert fit_temperature(views, labels) == pytest.approx(2.0, rel=0.1)


def test_fit_temperature_is_one_without_data_to_fit() -> None:
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    assert fit_temperature(np.ones((5, 3)), np.zeros(5, dtype=int)) == 1.0  # a single class
    separable = np.eye(3)[[0, 1, 2, 0]] * 2.0  # every image right: no evidence against certainty
    assert fit_temperature(separable, np.array([0, 1, 2, 0])) == 1.0


def test_fit_temperature_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((4, 3)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros(4), np.zeros(4, dtype=int))


def test_fit_temperature_on_a_handful_of_images_stays_off_its_bound() -> None:
    # 9 images of 30 classes under 2 views, each image right in one view and wrong in the other by a
    # small margin: as T falls the view average becomes a vote, which costs each image at most log 2,
    # so the likelihood alone drives T to its lower bound of 0.05 and makes every prediction certain.
    rng = np.random.default_rng(0)
    labels = np.arange(9)
    views = rng.normal(0, 3, size=(2, 9, 30))
    for view in range(2):
        runner_up = np.where(np.eye(30)[labels] > 0, -np.inf, views[view]).max(axis=1)
        right = (labels % 2 == view) | (labels == 8)
        views[view, labels, labels] = runner_up + np.where(right, 1.0, -1.0)
    assert np.mean(tempered_probabilities(views).argmax(axis=1) == labels) == pytest.approx(8 / 9)
    assert fit_temperature(views, labels, prior_sd=None) < 0.06
    assert fit_temperature(views, labels) > 0.3
