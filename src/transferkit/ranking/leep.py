"""LEEP: the log expected empirical prediction of the source model (Nguyen et al., ICML 2020).

The source model's class probabilities theta(x) over its Z source classes give the empirical joint
``P(y, z) = 1/N sum_i theta(x_i)_z [y_i = y]`` and the conditional ``P(y | z)``. The "dummy" classifier
``p(y | x) = sum_z P(y | z) theta(x)_z`` re-reads the source predictions as target labels;
LEEP is its mean log-likelihood on the training images: ``1/N sum_i log p(y_i | x_i)``, at most 0.
"""

from __future__ import annotations

import numpy as np

from transferkit.ranking.base import ScoreInputs, one_hot, register_score, require_source_probabilities

_TINY = 1e-300  # log(0) guard: a label that no source class predicts at all


def conditional_of_target(joint: np.ndarray) -> np.ndarray:
    """``P(y | z)`` from the joint ``P(y, z)``, (num_classes, Z); source classes never seen give 0."""
    marginal = joint.sum(axis=0, keepdims=True)
    return np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)


def leep(source_probabilities: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """LEEP of a source model's predictions for a target labeling.

    Shape:
        source_probabilities: (N, Z), rows summing to 1; labels: (N,) integers in ``range(num_classes)``.
    """
    theta = np.asarray(source_probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    joint = one_hot(labels, classes).T @ theta / len(labels)
    dummy = theta @ conditional_of_target(joint).T  # (N, num_classes): p(y | x) for every target class
    return float(np.log(np.maximum(dummy[np.arange(len(labels)), labels], _TINY)).mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits do not overflow."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@register_score("leep", "Nguyen et al., LEEP, ICML 2020", needs_source_head=True)
def leep_score(inputs: ScoreInputs) -> float:
    probabilities = require_source_probabilities(inputs, "LEEP")
    return leep(probabilities, inputs.labels, inputs.num_classes)
