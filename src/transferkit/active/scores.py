"""Uncertainty scores of a model's class probabilities: higher means the model is less sure.

Each takes probabilities (N, C) whose rows sum to 1 and returns (N,) scores in [0, 1]; they are
registered in `uncertainty_scores` so a selection method can name the one it ranks by.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transferkit.registry import Registry

UncertaintyScore = Callable[[np.ndarray], np.ndarray]
uncertainty_scores: Registry[UncertaintyScore] = Registry("uncertainty score")


@uncertainty_scores.register("margin")
def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 1 when the two most likely classes tie, 0 when one class has all the mass."""
    if probabilities.shape[1] < 2:
        return np.zeros(len(probabilities))
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])


@uncertainty_scores.register("entropy")
def entropy_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy divided by log C, so a uniform prediction scores 1 whatever the class count."""
    classes = probabilities.shape[1]
    if classes < 2:
        return np.zeros(len(probabilities))
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(clipped)).sum(axis=1) / np.log(classes)


@uncertainty_scores.register("least-confidence")
def least_confidence(probabilities: np.ndarray) -> np.ndarray:
    """(1 - p_top1) * C / (C - 1): 1 for a uniform prediction."""
    classes = probabilities.shape[1]
    if classes < 2:
        return np.zeros(len(probabilities))
    return (1.0 - probabilities.max(axis=1)) * classes / (classes - 1)
