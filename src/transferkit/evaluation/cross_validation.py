"""Cross-validation results: per-fold and out-of-fold metrics, from predictions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.data.labels import LabelGrouping
from transferkit.evaluation.metrics import compute_metrics, headline_metrics


def summarize_folds(
    fold_of: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    groupings: Sequence[LabelGrouping] = (),
) -> dict[str, Any]:
    """Headline metrics of each fold's held-out images, their mean and standard deviation over the
    folds, and every metric of all out-of-fold predictions together.

    Args:
        fold_of: the fold that held each image out, ``(N,)``.
        labels: true classes, ``(N,)``.
        probabilities: out-of-fold class probabilities, ``(N, C)``.
        class_names: name of each class.
        groupings: coarser tasks evaluated as well (ELPV's functional/defective).
    """
    folds = sorted(set(fold_of.tolist()))
    per_fold = [
        {"fold": int(k), "images": int((fold_of == k).sum())}
        | _headline(labels[fold_of == k], probabilities[fold_of == k], class_names, groupings)
        for k in folds
    ]
    names = [key for key in per_fold[0] if key not in ("fold", "images")]
    return {
        "folds": per_fold,
        "mean": {name: float(np.mean([row[name] for row in per_fold])) for name in names},
        "sd": {name: float(np.std([row[name] for row in per_fold], ddof=1)) for name in names},
        "out_of_fold": compute_metrics(labels, probabilities, class_names, groupings),
    }


def _headline(
    labels: np.ndarray, probabilities: np.ndarray, names: Sequence[str], groupings: Sequence[LabelGrouping]
) -> dict[str, float]:
    return headline_metrics(compute_metrics(labels, probabilities, names, groupings))
