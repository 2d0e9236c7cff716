"""SFDA: self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022).

A regularised Fisher discriminant is fitted to the features twice. The second time, each image is first
pulled toward the mean of the other classes by as much as the first discriminant doubted its label
(ConfMix): the hard images become harder, which tells apart models that separate only the easy ones.
The score is the mean probability the second discriminant gives each image's own class (0 to 1).

With every Fisher direction kept, the discriminant is linear discriminant analysis with the within-class
covariance shrunk toward a multiple of the identity, ``(1 - a) S_w + a tr(S_w) / D I``. The paper sets
the strength from the features' own scale, ``a = exp(-5 lambda_max(S_w))``, and keeps it for the second fit.
With fewer images than feature dimensions that strength is nearly 0, the discriminant separates any
features perfectly and the score saturates at 1, random features included; as for the H-score, the
strength is therefore at least the Ledoit-Wolf intensity of the class-centred features, which is large
exactly then (and near 0 with many images, where the paper's strength rules).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage

from transferkit.ranking.base import ScoreInputs, register_score
from transferkit.ranking.leep import softmax

_SCALE_RATE = 5.0  # a = exp(-rate * largest within-class eigenvalue), the paper's choice
_MIN_SHRINKAGE = 1e-10  # keeps the covariance invertible when the features leave it singular


def sfda(features: np.ndarray, labels: np.ndarray, shrinkage: float | None = None) -> float:
    """The SFDA score of `features` for `labels`: higher means better separable classes.

    Args:
        features: (N, D).
        labels: (N,) integers, at least two distinct classes.
        shrinkage: the covariance shrinkage a in (0, 1]; None: `adaptive_shrinkage`.
    """
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"SFDA needs images of at least two classes; got {len(classes)}.")
    # LDA's probabilities do not move with the origin; centring keeps the solve well scaled.
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    shrinkage = adaptive_shrinkage(x, y) if shrinkage is None else shrinkage
    doubt = 1.0 - softmax(lda_probabilities(x, y, shrinkage))[np.arange(len(y)), y, None]
    means = class_means(x, y)
    others = (means.sum(axis=0) - means) / (len(classes) - 1)  # row c: the mean of the other classes
    mixed = (1.0 - doubt) * x + doubt * others[y]
    return float(lda_probabilities(mixed, y, shrinkage)[np.arange(len(y)), y].mean())


def class_means(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C, D) mean feature of each class; `y` holds every class in range(C)."""
    counts = np.bincount(y)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, y, x)
    return sums / counts[:, None]


def adaptive_shrinkage(x: np.ndarray, y: np.ndarray) -> float:
    """The paper's ``exp(-5 lambda_max)``, at least the Ledoit-Wolf intensity of the class-centred
    features: little shrinkage for a wide within-class spread, unless too few images estimate it."""
    centred = x - class_means(x, y)[y]
    largest = np.linalg.norm(centred, ord=2) ** 2 / len(y)  # top eigenvalue of the within covariance
    estimated = float(ledoit_wolf_shrinkage(centred, assume_centered=True))
    return max(float(np.exp(-_SCALE_RATE * largest)), estimated, _MIN_SHRINKAGE)


def lda_probabilities(x: np.ndarray, y: np.ndarray, shrinkage: float) -> np.ndarray:
    """(N, C) class probabilities of each image under LDA fitted on (x, y) with a shrunk covariance."""
    means = class_means(x, y)
    centred = x - means[y]
    within = centred.T @ centred / len(y)  # the class covariances weighted by class frequency
    dims = within.shape[0]
    scale = np.trace(within) / dims or 1.0  # features without spread within classes: the identity
    covariance = (1.0 - shrinkage) * within + shrinkage * scale * np.eye(dims)
    weights = np.linalg.solve(covariance, means.T)  # (D, C): S^-1 mu_c
    priors = np.bincount(y) / len(y)
    logits = x @ weights - 0.5 * np.einsum("cd,dc->c", means, weights) + np.log(priors)
    return softmax(logits)


@register_score("sfda", "self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022)")
def sfda_score(inputs: ScoreInputs) -> float:
    return sfda(inputs.features, inputs.labels)
