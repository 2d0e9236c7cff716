"""LogME: the log marginal evidence of a Bayesian linear model on the features (You et al., ICML 2021).

For each class c, the one-hot target column y (N,) is modelled as ``y = F w + noise`` with the prior
``w ~ N(0, I / alpha)`` and ``noise ~ N(0, 1 / beta)``. The evidence ``log p(y | F, alpha, beta)`` is
maximised over alpha and beta; LogME is that maximum divided by N, averaged over the classes.
Features that let a simple linear model explain the labels with little noise score high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from transferkit.ranking._linalg import thin_svd
from transferkit.ranking.base import ScoreInputs, one_hot, register_score

# The fixed-point updates converge in a handful of steps; this bounds pathological inputs.
MAX_ITERATIONS = 100
TOLERANCE = 1e-6
_TINY = 1e-300  # keeps alpha and beta finite when the target is exactly explained or orthogonal
# The noise precision's ceiling. Where the features explain every label exactly (more dimensions than
# images, classes far apart), the evidence grows without bound with beta, and the updates ran it past
# what a float holds (beta**2 overflowed); every run that stayed below the ceiling is unchanged by it.
MAX_BETA = 1e100


@dataclass(frozen=True)
class Spectrum:
    """The features reduced to what the evidence of any target needs: one SVD, shared by all classes.

    Shape:
        left: (N, K) left singular vectors with non-negligible singular values, K <= min(N, D);
        eigenvalues: (K,) their squared singular values, the non-zero eigenvalues of F^T F.
    """

    left: np.ndarray
    eigenvalues: np.ndarray
    num_samples: int
    num_features: int

    @classmethod
    def of(cls, features: np.ndarray) -> Spectrum:
        matrix = np.asarray(features, dtype=np.float64)
        left, singular, _ = thin_svd(matrix)
        return cls(left, singular**2, matrix.shape[0], matrix.shape[1])


@dataclass(frozen=True)
class Target:
    """A target column in the features' singular basis.

    Attributes:
        projection: ``U.T @ y``, (K,).
        outside: ``||y||^2 - ||U.T @ y||^2``, the part no linear model of the features can explain.
    """

    projection: np.ndarray
    outside: float

    @classmethod
    def of(cls, spectrum: Spectrum, target: np.ndarray) -> Target:
        projection = spectrum.left.T @ target
        return cls(projection, max(float(target @ target - projection @ projection), 0.0))


def log_evidence(spectrum: Spectrum, target: Target, alpha: float, beta: float) -> float:
    """``log p(y | F, alpha, beta)``, from the spectrum instead of a D x D solve.

    Directions of zero singular value contribute only ``log alpha`` to ``log|A|``, so the spectrum may
    leave them out.

    With ``A = alpha I + beta F^T F`` and posterior mean ``m = beta A^-1 F^T y``:
    ``N/2 log beta + D/2 log alpha - N/2 log 2 pi - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log|A|``.
    """
    weight_norm, residual = _posterior_norms(spectrum, target, alpha, beta)
    rank = len(spectrum.eigenvalues)
    log_det = np.log(alpha + beta * spectrum.eigenvalues).sum() + (spectrum.num_features - rank) * math.log(
        alpha
    )
    n, d = spectrum.num_samples, spectrum.num_features
    return float(
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * weight_norm
        - log_det / 2
    )


def _posterior_norms(spectrum: Spectrum, target: Target, alpha: float, beta: float) -> tuple[float, float]:
    """``||m||^2`` and ``||F m - y||^2`` of the posterior mean, in the singular basis."""
    shrink = alpha + beta * spectrum.eigenvalues
    weight_norm = float((beta**2 * spectrum.eigenvalues * target.projection**2 / shrink**2).sum())
    # Along each singular direction F m misses y by alpha / (alpha + beta * eigenvalue) of y's component.
    residual = float(((alpha * target.projection / shrink) ** 2).sum()) + target.outside
    return weight_norm, residual


def maximize_evidence(spectrum: Spectrum, target: Target) -> tuple[float, float]:
    """The alpha and beta of maximum evidence, by MacKay's fixed-point updates.

    ``gamma = sum(beta s / (alpha + beta s))`` counts the well-determined directions; then
    ``alpha = gamma / ||m||^2`` and ``beta = (N - gamma) / ||F m - y||^2``.
    """
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        weight_norm, residual = _posterior_norms(spectrum, target, alpha, beta)
        gamma = float((beta * spectrum.eigenvalues / (alpha + beta * spectrum.eigenvalues)).sum())
        new_alpha = max(gamma, _TINY) / max(weight_norm, _TINY)
        new_beta = min(max(spectrum.num_samples - gamma, _TINY) / max(residual, _TINY), MAX_BETA)
        converged = abs(new_alpha - alpha) <= TOLERANCE * alpha and abs(new_beta - beta) <= TOLERANCE * beta
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    return alpha, beta


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """LogME of features for a classification task: mean over classes of the maximum evidence / N.

    Shape:
        features: (N, D); labels: (N,) integers in ``range(num_classes)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    spectrum = Spectrum.of(features)
    targets = one_hot(labels, classes)
    # A class without images has an all-zero column: its evidence says nothing about the features.
    present = np.unique(labels)
    total = 0.0
    for column in present:
        target = Target.of(spectrum, targets[:, column])
        total += log_evidence(spectrum, target, *maximize_evidence(spectrum, target))
    return total / (len(present) * spectrum.num_samples)


@register_score("logme", "You et al., LogME, ICML 2021")
def logme_score(inputs: ScoreInputs) -> float:
    return logme(inputs.features, inputs.labels, inputs.num_classes)
