"""kNN: leave-one-out k-nearest-neighbour accuracy on the frozen features.

Each training image is classified by the labels of its k most similar other images (cosine similarity,
votes weighted by it); the score is the share classified right. Large re-evaluations of transferability
estimators find this simple, hyperparameter-light score among the strongest single predictors of
fine-tuned accuracy (e.g. Renggli et al., "Which model to transfer?", WACV 2022).
"""

from __future__ import annotations

import numpy as np

from transferkit.ranking.base import ScoreInputs, one_hot, register_score

NEIGHBOURS = 10
_ROWS_PER_BLOCK = 1024  # bounds the similarity block in memory: 1024 x N floats


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Leave-one-out accuracy of a similarity-weighted k-nearest-neighbour vote.

    Shape:
        features: (N, D); labels: (N,) integers.
    """
    return float(knn_correct(features, labels, k).mean())


def knn_correct(features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """(N,) bool: whether the leave-one-out vote of `knn_accuracy` gets each image right; two models'
    vectors on the same images compare them image by image."""
    labels = np.asarray(labels, dtype=np.int64)
    count = len(labels)
    if count < 2:
        raise ValueError(f"kNN needs at least 2 images to leave one out; got {count}.")
    k = min(k, count - 1)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    votes_of = one_hot(labels, int(labels.max()) + 1)
    right = np.zeros(count, dtype=bool)
    for start in range(0, count, _ROWS_PER_BLOCK):
        rows = np.arange(start, min(start + _ROWS_PER_BLOCK, count))
        similarity = unit[rows] @ unit.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # an image is not its own neighbour
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, nearest, axis=1)
        # Shifted to be positive, so a neighbour never votes against its own class.
        votes = np.einsum("nk,nkc->nc", weights + 1.0, votes_of[nearest])
        right[rows] = votes.argmax(axis=1) == labels[rows]
    return right


@register_score("knn", "k-nearest-neighbour accuracy, leave-one-out (Renggli et al., WACV 2022)")
def knn_score(inputs: ScoreInputs) -> float:
    return knn_accuracy(inputs.features, inputs.labels)
