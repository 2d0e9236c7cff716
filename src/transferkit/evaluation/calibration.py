"""Calibration: how far predicted confidences are from observed accuracy, and temperature scaling.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides the
logits by one scalar ``T`` fitted on held-out data: ``T > 1`` softens over-confident predictions. The
argmax, and so accuracy, is unchanged for a single view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 15
# T is searched as log T in this range, i.e. T between 0.05 and 20: wide enough for any trained network,
# narrow enough that a degenerate validation split cannot push it to 0 or infinity.
_LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)
# The fit is a MAP estimate under a normal prior on log T around 0 (T = 1) with this standard deviation:
# at T = 0.5 or 2 it weighs about one image's log-loss, nothing against hundreds of held-out images, but
# on a handful of images whose right answers are unsure it stops their likelihood from driving T to the
# lower bound (every prediction certain and, with several views, a different view-averaged argmax).
LOG_TEMPERATURE_PRIOR_SD = 0.5


@dataclass(frozen=True)
class CalibrationSet:
    """Held-out predictions a temperature is fitted on: the validation split, or out-of-fold ones.

    Attributes:
        logits: per test-time view, ``(views, N, C)``.
        labels: true classes, ``(N,)``.
        name: what they are, for the report, e.g. ``val (197 images)``.
    """

    logits: np.ndarray
    labels: np.ndarray
    name: str

    @classmethod
    def validation(cls, logits: np.ndarray | None, labels: np.ndarray) -> CalibrationSet:
        """The validation split's view logits (None for an empty split), named for the report."""
        empty = np.empty((0, 0, 0), np.float32)
        return cls(empty if logits is None else logits, labels, f"val ({len(labels)} images)")

    def temperature(self) -> float:
        """The fitted temperature; 1 (no calibration) when there is nothing to fit on."""
        return fit_temperature(self.logits, self.labels) if len(self.labels) else 1.0

    def accuracy(self) -> float:
        """The share of images whose most probable class (views averaged) is their label."""
        return float(np.mean(tempered_probabilities(self.logits).argmax(1) == self.labels))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, prior_sd: float | None = LOG_TEMPERATURE_PRIOR_SD
) -> float:
    """The temperature minimizing the negative log-likelihood of the tempered, view-averaged softmax,
    under a weak prior that T is near 1.

    Objective: ``T* = argmin_T -mean_i log( mean_v softmax(logits[v, i] / T)[labels[i]] )
    + (log T)^2 / (2 s^2 N)``, the same averaging the predictor applies at test time (each view tempered,
    then the probabilities averaged); the second term (``s`` = `prior_sd`, None: none) matters only on a
    few images.

    Shape:
        logits: ``(N, C)``, or ``(V, N, C)`` for ``V`` test-time views of the same ``N`` images.
        labels: ``(N,)`` integer classes.

    Returns:
        The fitted temperature; 1.0 (no calibration) when there is nothing to fit: no images, fewer than
        two classes among the labels, or no image predicted wrong (then the likelihood only keeps rising
        as T falls to 0, and the fit would make every prediction certain).
    """
    views = _as_views(logits)
    labels = np.asarray(labels, dtype=np.int64)
    if views.shape[1] != len(labels):
        raise ValueError(
            f"logits hold {views.shape[1]} images but labels {len(labels)}; pass matching splits."
        )
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return 1.0
    if np.all(tempered_log_probabilities(views, 1.0).argmax(axis=1) == labels):
        return 1.0

    def negative_log_likelihood(log_temperature: float) -> float:
        log_probs = tempered_log_probabilities(views, float(np.exp(log_temperature)))
        prior = log_temperature**2 / (2 * prior_sd**2 * len(labels)) if prior_sd else 0.0
        return float(-log_probs[np.arange(len(labels)), labels].mean()) + prior

    from scipy.optimize import minimize_scalar  # half a second to import; predicting never fits

    result = minimize_scalar(negative_log_likelihood, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def tempered_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``mean_v softmax(logits[v] / temperature)``: what the exported predictor returns; ``(N, C)``."""
    return np.exp(tempered_log_probabilities(_as_views(logits), temperature))


def tempered_log_probabilities(views: np.ndarray, temperature: float) -> np.ndarray:
    """Log of the view-averaged tempered softmax of logits ``(V, N, C)``, computed stably; ``(N, C)``."""
    per_view = _log_softmax(views / temperature, axis=2)
    return _logsumexp(per_view, axis=0) - np.log(len(views))


def _log_softmax(values: np.ndarray, axis: int) -> np.ndarray:
    return values - _logsumexp(values, axis, keepdims=True)


def _logsumexp(values: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(values))) along `axis`, shifted by the maximum so that nothing overflows."""
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    total = np.log(np.sum(np.exp(values - peak), axis=axis, keepdims=True)) + peak
    return total if keepdims else np.squeeze(total, axis=axis)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """Test images grouped by top-1 confidence into equal-width bins over [0, 1].

    Args:
        probs: Class probabilities, shape ``(N, C)``.
        labels: Integer classes, shape ``(N,)``.
        bins: Number of equal-width bins; bin ``i`` holds confidences in ``[i / bins, (i + 1) / bins)``
            (the last one includes 1).

    Returns:
        The non-empty bins in increasing order, each ``{"lower", "upper", "count", "confidence",
        "accuracy"}`` with the bin's mean confidence and the fraction of its images predicted right.
    """
    probabilities = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidence, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    return [
        {
            "lower": i / bins,
            "upper": (i + 1) / bins,
            "count": int(counts[i]),
            "confidence": float(confidence_sums[i] / counts[i]),
            "accuracy": float(correct_sums[i] / counts[i]),
        }
        for i in np.flatnonzero(counts)
    ]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE: ``sum_b count_b / N * |accuracy_b - confidence_b|`` over the non-empty confidence bins."""
    rows = reliability_bins(probs, labels, bins)
    total = sum(row["count"] for row in rows)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in rows))


def _as_views(logits: np.ndarray) -> np.ndarray:
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(f"logits must have shape (N, C) or (views, N, C), got {array.shape}.")
    return array
