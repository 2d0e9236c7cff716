"""What a transferability score receives, and the registry the scores add themselves to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transferkit.errors import ConfigError
from transferkit.registry import Registry


@dataclass(frozen=True)
class ScoreInputs:
    """One candidate model's view of the labeled training images.

    Attributes:
        features: pooled pre-logit features, (N, D).
        labels: target class of each image, (N,), in ``range(num_classes)``.
        num_classes: classes of the target task.
        source_probabilities: the model's own predictions over its source classes, (N, Z); None when
            it has no source head (e.g. a timm model created without a classifier).
    """

    features: np.ndarray
    labels: np.ndarray
    num_classes: int
    source_probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class TransferabilityScore:
    """A registered score: higher means the model is expected to transfer better.

    Attributes:
        name: the name `rank --method` takes.
        compute: the score of one candidate.
        needs_source_head: True when the score reads `source_probabilities` instead of features.
        reference: the paper it comes from, for tables and docs.
    """

    name: str
    compute: Callable[[ScoreInputs], float]
    needs_source_head: bool
    reference: str

    def applies_to(self, inputs: ScoreInputs) -> bool:
        return not self.needs_source_head or inputs.source_probabilities is not None


transferability_scores: Registry[TransferabilityScore] = Registry("transferability score")


def register_score(
    name: str, reference: str, needs_source_head: bool = False
) -> Callable[[Callable[[ScoreInputs], float]], Callable[[ScoreInputs], float]]:
    """Adds a score function to `transferability_scores`; adding a score is one file and this decorator."""

    def decorate(compute: Callable[[ScoreInputs], float]) -> Callable[[ScoreInputs], float]:
        transferability_scores.add(name, TransferabilityScore(name, compute, needs_source_head, reference))
        return compute

    return decorate


def resolve_methods(methods: str | list[str] | tuple[str, ...]) -> list[str]:
    """``all`` or a list of registered names, in the order given; unknown names list the valid ones."""
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ConfigError("No transferability score chosen; pass logme, knn, sfda, hscore, leep, nce or all.")
    if "all" in names:
        return transferability_scores.names()
    for name in names:
        transferability_scores.get(name)
    return list(dict.fromkeys(names))


def require_source_probabilities(inputs: ScoreInputs, score: str) -> np.ndarray:
    """The source predictions a score reads; a model without a source head cannot give them."""
    if inputs.source_probabilities is None:
        raise ValueError(
            f"{score} reads the source model's class predictions, and this model has no source head; "
            "use a feature-based score (logme, knn, sfda, hscore) for it."
        )
    return inputs.source_probabilities


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) integer labels -> (N, num_classes) float64 indicator matrix."""
    return np.eye(num_classes, dtype=np.float64)[np.asarray(labels, dtype=np.int64)]
