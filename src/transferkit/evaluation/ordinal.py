"""Metrics of ordered classes, from confusion matrices: how far predictions land from the true class.

Both read one confusion matrix ``(C, C)`` (rows true, columns predicted, classes in their order) or a stack
of them ``(..., C, C)``, so the bootstrap in `metrics` computes them for every resample at once.
"""

from __future__ import annotations

import numpy as np


def mean_absolute_error(confusions: np.ndarray) -> np.ndarray:
    """The mean of ``|true - predicted|`` in class steps (0: every image right); shape ``(...)``."""
    size = confusions.shape[-1]
    steps = np.abs(np.subtract.outer(np.arange(size), np.arange(size)))
    return (confusions * steps).sum(axis=(-2, -1)) / confusions.sum(axis=(-2, -1))


def quadratic_weighted_kappa(confusions: np.ndarray) -> np.ndarray:
    """Cohen's kappa with quadratic weights (Cohen 1968), as scikit-learn's ``cohen_kappa_score(...,
    weights="quadratic")``; shape ``(...)``.

    ``κ = 1 - Σ w_ij O_ij / Σ w_ij E_ij`` with ``w_ij = (i - j)²``, O the observed confusion and E the one
    expected by chance from its margins. 1: perfect, 0: chance; NaN where undefined (all images and
    predictions in one class).
    """
    size = confusions.shape[-1]
    weights = np.subtract.outer(np.arange(size), np.arange(size)).astype(np.float64) ** 2
    observed = confusions.astype(np.float64)
    total = observed.sum(axis=(-2, -1), keepdims=True)
    expected = observed.sum(axis=-1, keepdims=True) * observed.sum(axis=-2, keepdims=True) / total
    disagreement = (weights * observed).sum(axis=(-2, -1))
    chance = (weights * expected).sum(axis=(-2, -1))
    kappa = np.full(np.shape(chance), np.nan)
    np.divide(disagreement, chance, out=kappa, where=chance > 0)
    return 1 - kappa
