"""Operating points: a probability threshold for one class, chosen on held-out images to reach a recall.

A rare class that matters (a defective cell) is often missed by the most-probable-class rule. With a
recall target, the class is predicted whenever its probability reaches a threshold, and only then; an
image below it gets the most probable of the other classes. The threshold is chosen on held-out images
(validation or out-of-fold predictions, the same ones the temperature is fitted on) so that a new image
of the class reaches it with at least the target probability (split conformal prediction), and is the
largest that does, which flags the fewest other images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from transferkit.errors import ConfigError

# Recall targets such as 0.95 of 20 images are 19.000000000000004 in floating point: a count within
# this of an integer is that integer.
_COUNT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RecallTarget:
    """The recall a class must reach on held-out images, with the class's index in the model's outputs."""

    class_name: str
    class_index: int
    recall: float


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on one class's calibrated probability: the class is predicted iff it is reached.

    Attributes:
        class_name: the class, as the source names it.
        class_index: its column in the probabilities.
        threshold: predict the class when its probability >= threshold.
        recall_target: the recall the threshold was chosen to reach.
        held_out_recall: the recall it reaches on the images it was chosen on.
        chosen_on: those images, e.g. ``val (197 images)``.
        held_out_positives: how many of them belong to the class (None in bundles that predate it).
    """

    class_name: str
    class_index: int
    threshold: float
    recall_target: float
    held_out_recall: float
    chosen_on: str
    held_out_positives: int | None = None

    @property
    def expected_recall(self) -> float | None:
        """The probability that a new image of the class reaches the threshold (`attainable_recall`);
        None when the count of held-out images of the class is unknown."""
        if self.held_out_positives is None:
            return None
        return attainable_recall(self.recall_target, self.held_out_positives)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "expected_recall": self.expected_recall}

    @classmethod
    def from_dict(cls, values: dict[str, Any], label_names: Sequence[str]) -> OperatingPoint:
        """An operating point from a bundle's config.json; ValueError when it does not fit `label_names`."""
        point = cls(
            str(values["class_name"]),
            int(values["class_index"]),
            float(values["threshold"]),
            float(values["recall_target"]),
            float(values["held_out_recall"]),
            str(values["chosen_on"]),
            None if values.get("held_out_positives") is None else int(values["held_out_positives"]),
        )
        in_range = 0 <= point.class_index < len(label_names)
        if not in_range or label_names[point.class_index] != point.class_name:
            raise ValueError(f"class {point.class_name!r} is not output {point.class_index} of {label_names}")
        if not 0 <= point.threshold <= 1:
            raise ValueError(f"threshold {point.threshold} lies outside [0, 1]")
        return point


def resolve_recall_target(
    target: tuple[str, float] | None, class_names: Sequence[str]
) -> RecallTarget | None:
    """The configured ``(class name, recall)`` with the class's index, checked against the classes.

    Raises:
        ConfigError: the class is not one of `class_names`.
    """
    if target is None:
        return None
    name, recall = target
    if name not in class_names:
        raise ConfigError(
            f"Config key 'decision.recall_target' (--recall-target) names the class {name!r}, which the data "
            f"does not have; its classes are {', '.join(map(repr, class_names))}, e.g. "
            f"{class_names[-1]}:{recall:g}."
        )
    return RecallTarget(name, list(class_names).index(name), recall)


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray, class_index: int, recall: float) -> float:
    """The largest threshold on column `class_index` that a new image of that class reaches with
    probability at least `recall`: the probability of the ``ceil(recall * (positives + 1))``-th most
    probable held-out positive.

    A new image of the class is exchangeable with the n held-out ones, so its probability ranks among
    theirs anywhere with equal chance, and it reaches the k-th highest with probability k / (n + 1)
    (split conformal prediction; Angelopoulos and Bates, "A Gentle Introduction to Conformal
    Prediction", 2021). The ``ceil(recall * n)``-th instead finds `recall` of the held-out positives
    but less of new ones on average. With too few positives for the target (k > n, e.g. fewer than 19
    for 0.95), the threshold is the least probable positive: every held-out one is found.

    Shape:
        probabilities: (N, C); labels: (N,).

    Raises:
        ValueError: no image of the class among `labels`.
    """
    positives = np.sort(np.asarray(probabilities)[np.asarray(labels) == class_index, class_index])[::-1]
    if not len(positives):
        raise ValueError(f"no held-out image of class {class_index} to choose a threshold on")
    return _float32_at_most(float(positives[_conformal_rank(recall, len(positives)) - 1]))


def _conformal_rank(recall: float, positives: int) -> int:
    """The rank (1 = most probable) of the held-out positive whose probability is the threshold."""
    return min(positives, max(1, math.ceil(recall * (positives + 1) - _COUNT_TOLERANCE)))


def attainable_recall(recall: float, positives: int) -> float:
    """The recall on new images of the class that a threshold chosen for `recall` on `positives` held-out
    images of it promises: `recall`, or n / (n + 1) when n is too few for it (e.g. 13 for 0.95)."""
    return min(recall, _conformal_rank(recall, positives) / (positives + 1))


def _float32_at_most(value: float) -> float:
    """The largest float32 not above `value`: the predictor's float32 probabilities then meet the
    threshold exactly where these float64 ones do."""
    single = np.float32(value)
    # Compared as float64: numpy would compare a float32 with a Python float in float32.
    return float(single) if float(single) <= value else float(np.nextafter(single, np.float32(-np.inf)))


def decide(probabilities: np.ndarray, point: OperatingPoint | None) -> np.ndarray:
    """The predicted class of each row of probabilities (N, C): the point's class iff its probability
    reaches the threshold, else the most probable other class; the most probable class without a point."""
    probabilities = np.asarray(probabilities)
    if point is None:
        return probabilities.argmax(axis=1)
    others = probabilities.copy()
    others[:, point.class_index] = -np.inf
    flagged = probabilities[:, point.class_index] >= point.threshold
    return np.where(flagged, point.class_index, others.argmax(axis=1))


def operating_point(
    target: RecallTarget, probabilities: np.ndarray, labels: np.ndarray, chosen_on: str
) -> OperatingPoint:
    """The operating point reaching `target` on held-out calibrated `probabilities` (N, C) with `labels`."""
    threshold = choose_threshold(probabilities, labels, target.class_index, target.recall)
    positives = np.asarray(labels) == target.class_index
    reached = float(np.mean(probabilities[positives, target.class_index] >= threshold))
    count = int(positives.sum())
    return OperatingPoint(
        target.class_name, target.class_index, threshold, target.recall, reached, chosen_on, count
    )
