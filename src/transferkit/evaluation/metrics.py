"""Classification metrics computed from predicted probabilities.

Everything is derived from one confusion matrix with numpy, so the numbers are cheap, deterministic and
returned as plain Python types that ``json.dump`` accepts without a custom encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.data.labels import LabelGrouping

# Probabilities of exactly zero would make the log-loss infinite; clipping keeps one confident mistake from
# swamping the average while still punishing it hard.
_LOG_LOSS_EPS = 1e-12
# Softmax outputs in float16/float32 do not sum to exactly one; this only catches logits passed by mistake.
_ROW_SUM_TOLERANCE = 1e-3


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    groupings: Sequence[LabelGrouping] = (),
) -> dict[str, Any]:
    """Compute accuracy-style metrics, per-class scores and the confusion matrix.

    Predictions are the argmax of ``probs``. Balanced accuracy is the mean recall over classes with at least
    one true sample. Macro-F1 averages over classes that occur in ``y_true`` or in the predictions; classes
    with neither support nor predictions are left out, as scikit-learn does by default.

    For each grouping, a sample's group probability is the sum of the probabilities of the member classes
    and the grouped prediction is the argmax of those sums. This differs from mapping the fine argmax to its
    group: probability mass spread over several classes of one group counts towards that group.

    Args:
        y_true: Integer class labels, shape ``(N,)``.
        probs: Class probabilities, shape ``(N, C)``, rows summing to one.
        class_names: Name of each of the ``C`` classes.
        groupings: Coarser tasks to score in addition to the fine classes.

    Returns:
        A JSON-serialisable dict with ``num_samples``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``,
        ``log_loss``, ``per_class``, ``confusion_matrix`` (rows true, columns predicted) and ``groupings``.

    Raises:
        ValueError: If shapes, labels, probabilities or groupings are inconsistent.
    """
    labels, probabilities = _validated_inputs(y_true, probs, class_names)
    confusion = _confusion_matrix(labels, probabilities.argmax(axis=1), len(class_names))
    return {
        "num_samples": len(labels),
        **_summary(confusion),
        "log_loss": _log_loss(labels, probabilities),
        "per_class": _per_class(confusion, class_names),
        "confusion_matrix": confusion.tolist(),
        "groupings": {g.name: _grouped_metrics(labels, probabilities, g) for g in groupings},
    }


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flatten the metrics that belong in a summary table.

    Args:
        metrics: Output of :func:`compute_metrics`.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` and ``<grouping>_accuracy`` for every grouping.
    """
    flat = {key: float(metrics[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1")}
    for name, grouped in metrics.get("groupings", {}).items():
        flat[f"{name}_accuracy"] = float(grouped["accuracy"])
    return flat


def _validated_inputs(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y_true)
    probabilities = np.asarray(probs, dtype=np.float64)
    num_classes = len(class_names)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array of labels, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {labels.dtype}; cast it to int.")
    if probabilities.shape != (len(labels), num_classes):
        raise ValueError(
            f"probs must have shape (len(y_true), len(class_names)) = ({len(labels)}, {num_classes}), "
            f"got {probabilities.shape}."
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"y_true contains labels outside [0, {num_classes - 1}] "
            f"(min {labels.min()}, max {labels.max()}); check that class_names lists every class."
        )
    _check_probabilities(probabilities)
    return labels.astype(np.int64), probabilities


def _check_probabilities(probabilities: np.ndarray) -> None:
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0:
        raise ValueError("probs must be finite and non-negative; pass softmax outputs, not logits.")
    row_sums = probabilities.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=_ROW_SUM_TOLERANCE):
        worst = float(row_sums[np.argmax(np.abs(row_sums - 1.0))])
        raise ValueError(
            f"probs rows must sum to 1 (found a row summing to {worst:.4f}); apply softmax first."
        )


def _confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _precision_recall_f1(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    # Undefined ratios (no support / no predictions) count as 0, like scikit-learn's zero_division default.
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return precision, recall, f1


def _summary(confusion: np.ndarray) -> dict[str, float]:
    _, recall, f1 = _precision_recall_f1(confusion)
    support = confusion.sum(axis=1)
    present = (support > 0) | (confusion.sum(axis=0) > 0)
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1[present].mean()),
    }


def _per_class(confusion: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    precision, recall, f1 = _precision_recall_f1(confusion)
    support = confusion.sum(axis=1)
    return [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    true_class_probs = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(true_class_probs, _LOG_LOSS_EPS, 1.0))))


def _grouped_metrics(
    labels: np.ndarray, probabilities: np.ndarray, grouping: LabelGrouping
) -> dict[str, Any]:
    num_classes = probabilities.shape[1]
    if len(grouping.group_of_class) != num_classes:
        raise ValueError(
            f"LabelGrouping {grouping.name!r} maps {len(grouping.group_of_class)} classes, "
            f"but probs has {num_classes}; give one group index per class."
        )
    group_of_class = np.asarray(grouping.group_of_class, dtype=np.int64)
    num_groups = len(grouping.group_names)
    # One-hot membership turns "sum the member probabilities" into a single matrix product.
    membership = np.eye(num_groups)[group_of_class]
    group_probs = probabilities @ membership
    confusion = _confusion_matrix(group_of_class[labels], group_probs.argmax(axis=1), num_groups)
    return {
        **_summary(confusion),
        "group_names": list(grouping.group_names),
        "confusion_matrix": confusion.tolist(),
    }
