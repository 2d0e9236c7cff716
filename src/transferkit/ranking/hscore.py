"""H-score: how much of the features' variance the class means explain (Bao et al., ICIP 2019).

``H(f) = tr(cov(f)^+ cov(E[f | y]))``: class-conditional means spread far apart relative to the features'
total covariance make a linear classifier's job easy. Between 0 and ``num_classes - 1``.

With fewer images than feature dimensions the sample covariance is singular, and the original score
saturates at ``num_classes - 1`` for any features, random ones included. Following Ibrahim et al.
(Newer is not always better, ECML 2022), the covariance is shrunk towards a multiple of the identity by
the Ledoit-Wolf intensity a: ``cov_a = (1 - a) cov(f) + a tr(cov(f)) / D I``, and the between-class part
is scaled by ``1 - a`` like the rest of the covariance. ``shrinkage=0`` gives the original score.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage

from transferkit.ranking._linalg import thin_svd
from transferkit.ranking.base import ScoreInputs, one_hot, register_score


def hscore(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None, shrinkage: float | None = None
) -> float:
    """H-score of features for a labeling.

    Args:
        features: (N, D) features.
        labels: (N,) integers in ``range(num_classes)``.
        num_classes: classes of the task; None: the largest label + 1.
        shrinkage: the covariance shrinkage a in [0, 1]; None estimates it (Ledoit-Wolf); 0 is the
            original score, with a pseudo-inverse that drops directions whose variance is below
            ``max(N, D) * eps`` of the largest.
    """
    matrix = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    centred = matrix - matrix.mean(axis=0)
    amount = float(ledoit_wolf_shrinkage(centred, assume_centered=True)) if shrinkage is None else shrinkage
    # The covariance's eigenvectors are the right singular vectors of the centred features. Class means
    # lie in the span of the rows, so directions outside it (variance 0) never contribute.
    _, singular, directions = thin_svd(centred)
    variances = singular**2 / len(centred)
    shrunk = (1 - amount) * variances + amount * variances.sum() / matrix.shape[1]
    # cov(E[f|y]) = sum_c p_c mu_c mu_c^T (centred class means), so tr(S^+ B) = sum_c p_c |S^-1/2 mu_c|^2.
    indicators = one_hot(labels, classes)
    counts = indicators.sum(axis=0)
    present = counts > 0
    means = (indicators.T @ centred)[present] / counts[present, None]
    whitened = (means @ directions.T) / np.sqrt(shrunk)
    return float((1 - amount) * (counts[present] / len(labels)) @ (whitened**2).sum(axis=1))


@register_score(
    "hscore",
    "Bao et al., ICIP 2019; covariance shrinkage of Ibrahim et al., ECML 2022",
)
def hscore_score(inputs: ScoreInputs) -> float:
    return hscore(inputs.features, inputs.labels, inputs.num_classes)
