"""NCE: negative conditional entropy of target labels given source labels (Tran et al., ICCV 2019).

Each training image gets the source model's top class z_i; from the empirical joint of (y_i, z_i),
``NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z)``, at most 0. When the source classes pin down the
target classes (every z maps to one y), NCE is 0.
"""

from __future__ import annotations

import numpy as np

from transferkit.ranking.base import ScoreInputs, one_hot, register_score, require_source_probabilities
from transferkit.ranking.leep import conditional_of_target


def nce(source_labels: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """NCE of hard source labels for a target labeling.

    Shape:
        source_labels: (N,) source class indices; labels: (N,) integers in ``range(num_classes)``.
    """
    source = np.asarray(source_labels, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    joint = one_hot(labels, classes).T @ one_hot(source, int(source.max()) + 1) / len(labels)
    conditional = conditional_of_target(joint)
    seen = joint > 0  # 0 log 0 = 0
    return float((joint[seen] * np.log(conditional[seen])).sum())


@register_score(
    "nce",
    "Tran et al., Transferability and hardness of supervised classification tasks, ICCV 2019",
    needs_source_head=True,
)
def nce_score(inputs: ScoreInputs) -> float:
    probabilities = require_source_probabilities(inputs, "NCE")
    return nce(probabilities.argmax(axis=1), inputs.labels, inputs.num_classes)
