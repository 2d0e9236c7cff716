"""Classification metrics computed from predicted probabilities, with bootstrap confidence intervals.

Everything is derived from confusion matrices with numpy, so the numbers are cheap, deterministic and
returned as plain Python types that ``json.dump`` accepts without a custom encoder. Intervals are 95 %
percentile bootstrap intervals over the test images (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993): the test set is resampled with replacement and every metric recomputed per resample.
Proportions take intervals that keep their width where the percentile bootstrap shrinks to a point (a
class whose few test images are all right is right in every resample): accuracy, and an operating point's
recall and precision, the Wilson score interval (Brown, Cai & DasGupta, "Interval Estimation for a
Binomial Proportion", 2001); balanced accuracy, a mean of recalls, the bootstrap's interval joined with
its posterior's (Brodersen et al., "The balanced accuracy and its posterior distribution", ICPR 2010,
with Jeffreys priors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from transferkit.data.labels import LabelGrouping
from transferkit.evaluation.calibration import expected_calibration_error, reliability_bins
from transferkit.evaluation.operating_point import OperatingPoint, decide
from transferkit.evaluation.ordinal import mean_absolute_error, quadratic_weighted_kappa

# Probabilities of exactly zero would make the log-loss infinite; clipping keeps one confident mistake from
# swamping the average while still punishing it hard.
_LOG_LOSS_EPS = 1e-12
# Softmax outputs in float16/float32 do not sum to exactly one; this only catches logits passed by mistake.
_ROW_SUM_TOLERANCE = 1e-3
BOOTSTRAP_RESAMPLES = 1000
_INTERVAL_PERCENTILES = (2.5, 97.5)
_Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95 % interval
# Resample indices drawn at a time (resamples x test images): bounds memory for large test sets.
_MAX_DRAWS_PER_CHUNK = 1 << 20
TOP_K = (3, 5)
ORDINAL_METRICS = ("mae", "qwk")
# Below one accuracy point of resolution a test set is precise enough not to warrant a warning.
_NOISE_NOTE_THRESHOLD = 0.01

Statistic = Callable[[np.ndarray], np.ndarray]


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    groupings: Sequence[LabelGrouping] = (),
    *,
    ordered: bool = False,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """Compute accuracy-style metrics with confidence intervals, AUROC, calibration and the confusion matrix.

    Predictions are the argmax of ``probs``. Balanced accuracy is the mean recall over classes with at least
    one true sample. Macro-F1 averages over classes that occur in ``y_true`` or in the predictions; classes
    with neither support nor predictions are left out, as scikit-learn does by default. AUROC is the ROC
    AUC of the probability of class 1 for two classes, otherwise the macro average of one-vs-rest AUCs over
    the classes with both positives and negatives in ``y_true``; None when no class has both.

    For each grouping, a sample's group probability is the sum of the probabilities of the member classes
    and the grouped prediction is the argmax of those sums. This differs from mapping the fine argmax to its
    group: probability mass spread over several classes of one group counts towards that group.

    Args:
        y_true: Integer class labels, shape ``(N,)``.
        probs: Class probabilities, shape ``(N, C)``, rows summing to one.
        class_names: Name of each of the ``C`` classes.
        groupings: Coarser tasks to score in addition to the fine classes.
        ordered: The classes are ordered as ``class_names`` lists them: add ``mae`` (mean absolute error
            in class steps) and ``qwk`` (quadratic weighted kappa), with intervals.
        seed: Seed of the bootstrap resampling; the fine classes and every grouping share the resamples.
        resamples: Number of bootstrap resamples of the test images.

    Returns:
        A JSON-serialisable dict with ``num_samples``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``,
        ``log_loss``, ``auroc``, ``intervals`` (``[low, high]`` per metric, None where undefined),
        ``resolution`` (half the width of the accuracy interval), ``top_k_accuracy`` (only for more than
        five classes), ``per_class`` (with ``f1_interval``), ``confusion_matrix`` (rows true, columns
        predicted), ``calibration`` (``ece`` and reliability ``bins``) and ``groupings``.

    Raises:
        ValueError: If shapes, labels, probabilities or groupings are inconsistent, or resamples < 1.
    """
    labels, probabilities = _validated_inputs(y_true, probs, class_names)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 (1000 is usual), got {resamples}.")
    bootstrap = _Bootstrap(len(labels), resamples, seed)
    scores = _scores(labels, probabilities, bootstrap)
    metrics: dict[str, Any] = {
        "num_samples": len(labels),
        **scores.summary,
        "log_loss": _log_loss(labels, probabilities),
        "auroc": scores.auroc,
        "intervals": scores.intervals,
        "resolution": _half_width(scores.intervals["accuracy"]),
    }
    if ordered:
        ordinal = _ordinal_scores(labels, probabilities.argmax(axis=1), len(class_names), bootstrap)
        metrics.update({name: value for name, (value, _) in ordinal.items()})
        metrics["intervals"] |= {name: interval for name, (_, interval) in ordinal.items()}
    if len(class_names) > max(TOP_K):
        metrics["top_k_accuracy"] = {str(k): _top_k_accuracy(labels, probabilities, k) for k in TOP_K}
    return {
        **metrics,
        "per_class": _per_class(scores.confusion, class_names, scores.f1_intervals),
        "confusion_matrix": scores.confusion.tolist(),
        "calibration": {
            "ece": expected_calibration_error(probabilities, labels),
            "bins": reliability_bins(probabilities, labels),
        },
        "groupings": {g.name: _grouped_metrics(labels, probabilities, g, bootstrap) for g in groupings},
    }


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flatten the metrics that belong in a summary table.

    Args:
        metrics: Output of :func:`compute_metrics`.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``mae`` and ``qwk`` for ordered classes, and
        ``<grouping>_accuracy`` for every grouping.
    """
    flat = {key: float(metrics[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1")}
    flat |= {key: float(metrics[key]) for key in ORDINAL_METRICS if metrics.get(key) is not None}
    for name, grouped in metrics.get("groupings", {}).items():
        flat[f"{name}_accuracy"] = float(grouped["accuracy"])
    return flat


def operating_point_metrics(y_true: np.ndarray, probs: np.ndarray, point: OperatingPoint) -> dict[str, Any]:
    """Recall and precision of the point's class when it is predicted by its threshold (`decide`), and the
    accuracy and share of images flagged under that rule; the three proportions with Wilson intervals.

    Returns:
        ``point`` (the operating point), ``recall``, ``precision`` (None when nothing is flagged),
        ``accuracy``, ``flagged`` (the share of images predicted as the class) and ``intervals``.
    """
    labels = np.asarray(y_true, dtype=np.int64)
    predictions = decide(np.asarray(probs, dtype=np.float64), point)
    confusion = _confusion_matrix(labels, predictions, np.asarray(probs).shape[1])
    hits = int(confusion[point.class_index, point.class_index])
    proportions = {  # successes, trials
        "recall": (hits, int(confusion[point.class_index].sum())),
        "precision": (hits, int(confusion[:, point.class_index].sum())),
        "accuracy": (int(np.trace(confusion)), len(labels)),
    }
    return {
        "point": point.to_dict(),
        **{name: k / n if n else None for name, (k, n) in proportions.items()},
        "flagged": proportions["precision"][1] / len(labels),
        "intervals": {name: wilson_interval(k, n) if n else None for name, (k, n) in proportions.items()},
    }


def noise_note(metrics: dict[str, Any]) -> str | None:
    """A warning when the test set is too small to tell accuracies a point apart, else None.

    Args:
        metrics: Output of :func:`compute_metrics`.
    """
    resolution = metrics.get("resolution")
    if resolution is None or resolution <= _NOISE_NOTE_THRESHOLD:
        return None
    return (
        f"With {metrics['num_samples']} test images the 95 % interval of accuracy spans "
        f"±{100 * resolution:.1f} points: differences between runs smaller than that are within the noise."
    )


@dataclass(frozen=True)
class _Bootstrap:
    """Resamples of test-image indices, regenerated from the seed so every statistic sees the same ones."""

    num_samples: int
    resamples: int
    seed: int

    def draws(self) -> Iterator[np.ndarray]:
        """Index matrices (resamples in the chunk, N), chunked to bound memory."""
        rng = np.random.default_rng(self.seed)
        step = max(1, _MAX_DRAWS_PER_CHUNK // self.num_samples)
        for start in range(0, self.resamples, step):
            size = min(step, self.resamples - start)
            yield rng.integers(0, self.num_samples, size=(size, self.num_samples))

    def apply(self, statistic: Statistic) -> np.ndarray:
        """``statistic`` (index matrix -> one row per resample) over every resample, concatenated."""
        return np.concatenate([statistic(draws) for draws in self.draws()])


@dataclass(frozen=True)
class _Scores:
    confusion: np.ndarray
    summary: dict[str, float]
    auroc: float | None
    intervals: dict[str, list[float] | None]
    f1_intervals: list[list[float] | None]


def _scores(labels: np.ndarray, probabilities: np.ndarray, bootstrap: _Bootstrap) -> _Scores:
    """Point estimates and bootstrap intervals of the summary metrics and AUROC of one labelling."""
    num_classes = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    confusion = _confusion_matrix(labels, predictions, num_classes)
    summary = _summary(confusion)
    auroc_columns = _auroc_columns(labels, probabilities)

    def resampled(draws: np.ndarray) -> np.ndarray:
        confusions = _resampled_confusions(labels, predictions, num_classes, draws)
        summaries = _summaries(confusions)
        columns = [summaries[key] for key in summary]
        auroc = _macro_auroc(auroc_columns, _draw_counts(draws))
        return np.column_stack([*columns, auroc, _precision_recall_f1(confusions)[2]])

    samples = bootstrap.apply(resampled)
    auroc = _macro_auroc(auroc_columns, np.ones((1, len(labels)), dtype=np.int64))[0]
    names = [*summary, "auroc"]
    intervals = {name: _interval(samples[:, i]) for i, name in enumerate(names)}
    intervals["accuracy"] = wilson_interval(int(np.trace(confusion)), int(confusion.sum()))
    posterior = balanced_accuracy_posterior(confusion, bootstrap.seed, bootstrap.resamples)
    intervals["balanced_accuracy"] = _union(intervals["balanced_accuracy"], posterior)
    return _Scores(
        confusion=confusion,
        summary=summary,
        auroc=None if np.isnan(auroc) else float(auroc),
        intervals=intervals,
        f1_intervals=[_interval(column) for column in samples[:, len(names) :].T],
    )


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


def _resampled_confusions(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, draws: np.ndarray
) -> np.ndarray:
    """One confusion matrix per row of ``draws`` (resamples, N); shape (resamples, C, C)."""
    cells = num_classes * num_classes
    codes = (labels * num_classes + predictions)[draws] + np.arange(len(draws))[:, None] * cells
    return np.bincount(codes.ravel(), minlength=len(draws) * cells).reshape(-1, num_classes, num_classes)


def _draw_counts(draws: np.ndarray) -> np.ndarray:
    """How often each test image occurs in each resample; shape (resamples, N)."""
    resamples, num_samples = draws.shape
    flat = (draws + np.arange(resamples)[:, None] * num_samples).ravel()
    return np.bincount(flat, minlength=resamples * num_samples).reshape(resamples, num_samples)


def _precision_recall_f1(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class scores of a confusion matrix (C, C), or of a stack of them (..., C, C)."""
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    # Undefined ratios (no support / no predictions) count as 0, like scikit-learn's zero_division default.
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return precision, recall, f1


def _summaries(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of a stack of confusion matrices (..., C, C)."""
    _, recall, f1 = _precision_recall_f1(confusions)
    support = confusions.sum(axis=-1)
    with_support = support > 0
    present = with_support | (confusions.sum(axis=-2) > 0)
    return {
        "accuracy": np.trace(confusions, axis1=-2, axis2=-1) / confusions.sum(axis=(-2, -1)),
        "balanced_accuracy": (recall * with_support).sum(axis=-1) / with_support.sum(axis=-1),
        "macro_f1": (f1 * present).sum(axis=-1) / present.sum(axis=-1),
    }


def _summary(confusion: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in _summaries(confusion).items()}


@dataclass(frozen=True)
class _RankedScores:
    """One score column sorted once, for the weighted Mann-Whitney AUC under any sample weights.

    ``AUC = sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (sum_pos w * sum_neg w)``; with
    bootstrap counts as weights this is the AUC of each resample without materialising it. One cumulative
    sum of the negatives' weights in score order gives, for each positive, the weight of negatives before
    its tie group and up to the group's end; ``[>] + [=] / 2`` is the mean of the two.
    """

    order: np.ndarray  # (N,) indices sorting the scores
    negative: np.ndarray  # (N,) 1 for negatives, in sorted order
    positives: np.ndarray  # (P,) sorted positions of the positives
    group_start: np.ndarray  # (P,) first sorted position of each positive's tie group
    group_end: np.ndarray  # (P,) one past its last

    @classmethod
    def of(cls, scores: np.ndarray, positive: np.ndarray) -> _RankedScores:
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:], len(scores)]
        group = np.cumsum(new_group) - 1
        positives = np.flatnonzero(positive[order])
        negative = (~positive[order]).astype(np.int64)
        return cls(order, negative, positives, starts[group[positives]], ends[group[positives]])

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        """AUC under each row of integer ``weights`` (R, N); (R,), NaN where a class has no weight."""
        sorted_weights = np.take(weights, self.order, axis=1)
        negatives = np.zeros((len(weights), len(self.order) + 1), dtype=np.int64)
        np.cumsum(sorted_weights * self.negative, axis=1, out=negatives[:, 1:])
        below, up_to = negatives[:, self.group_start], negatives[:, self.group_end]
        positive_weights = sorted_weights[:, self.positives]
        wins = (positive_weights * (below + up_to)).sum(axis=1) / 2
        pairs = positive_weights.sum(axis=1) * negatives[:, -1].astype(np.float64)
        return np.divide(wins, pairs, out=np.full(len(wins), np.nan), where=pairs > 0)


def _auroc_columns(labels: np.ndarray, probabilities: np.ndarray) -> list[_RankedScores]:
    """Two classes: the probability of class 1 against class 1. More: one-vs-rest for every class with
    both positives and negatives in ``labels``."""
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        return [_RankedScores.of(probabilities[:, 1], labels == 1)]
    support = np.bincount(labels, minlength=num_classes)
    scored = np.flatnonzero((support > 0) & (support < len(labels)))
    return [_RankedScores.of(probabilities[:, c], labels == c) for c in scored]


def _macro_auroc(columns: Sequence[_RankedScores], weights: np.ndarray) -> np.ndarray:
    """Mean AUC of ``columns`` per row of ``weights`` (R, N), over the columns defined in that row."""
    if not columns:
        return np.full(len(weights), np.nan)
    per_column = np.stack([column.auroc(weights) for column in columns])
    defined = ~np.isnan(per_column)
    count = defined.sum(axis=0)
    total = np.where(defined, per_column, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(len(weights), np.nan), where=count > 0)


def wilson_interval(successes: int, trials: int) -> list[float]:
    """The 95 % Wilson score interval of a proportion `successes` / `trials` (trials > 0)."""
    share, z2 = successes / trials, _Z_95**2
    centre = (share + z2 / (2 * trials)) / (1 + z2 / trials)
    half = _Z_95 * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials**2)) / (1 + z2 / trials)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def balanced_accuracy_posterior(confusion: np.ndarray, seed: int, draws: int) -> list[float] | None:
    """The 95 % equal-tailed interval of balanced accuracy's posterior: each class's recall drawn from
    Beta(k + 1/2, n - k + 1/2), averaged over the classes with test images. Unlike the bootstrap it keeps
    its width where a class's few images are all right; its priors pull a class of one or two images
    toward a recall of 1/2, so it backs the bootstrap up rather than replacing it."""
    support, correct = confusion.sum(axis=1), np.diag(confusion)
    present = support > 0
    if not present.any():
        return None
    hits, misses = correct[present], support[present] - correct[present]
    recalls = np.random.default_rng(seed).beta(hits + 0.5, misses + 0.5, size=(draws, len(hits)))
    low, high = np.percentile(recalls.mean(axis=1), _INTERVAL_PERCENTILES)
    return [float(low), float(high)]


def _union(first: list[float] | None, second: list[float] | None) -> list[float] | None:
    if first is None or second is None:
        return first or second
    return [min(first[0], second[0]), max(first[1], second[1])]


def _interval(samples: np.ndarray) -> list[float] | None:
    """The 95 % percentile interval of bootstrap samples, ignoring resamples where it is undefined."""
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return None
    low, high = np.percentile(finite, _INTERVAL_PERCENTILES)
    return [float(low), float(high)]


def _half_width(interval: list[float] | None) -> float | None:
    return None if interval is None else (interval[1] - interval[0]) / 2


def _top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the k most probable (ties in its favour)."""
    true_probs = probabilities[np.arange(len(labels)), labels]
    higher = (probabilities > true_probs[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def _per_class(
    confusion: np.ndarray, class_names: Sequence[str], f1_intervals: Sequence[list[float] | None]
) -> list[dict[str, Any]]:
    precision, recall, f1 = _precision_recall_f1(confusion)
    support = confusion.sum(axis=1)
    return [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "f1_interval": f1_intervals[i],
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    true_class_probs = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(true_class_probs, _LOG_LOSS_EPS, 1.0))))


def _ordinal_scores(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, bootstrap: _Bootstrap
) -> dict[str, tuple[float | None, list[float] | None]]:
    """MAE and QWK of the predictions with their bootstrap intervals, on the same resamples."""
    confusion = _confusion_matrix(labels, predictions, num_classes)

    def both(confusions: np.ndarray) -> np.ndarray:
        return np.stack([mean_absolute_error(confusions), quadratic_weighted_kappa(confusions)], axis=-1)

    samples = bootstrap.apply(
        lambda draws: both(_resampled_confusions(labels, predictions, num_classes, draws))
    )
    values = both(confusion)
    return {
        name: (None if np.isnan(values[i]) else float(values[i]), _interval(samples[:, i]))
        for i, name in enumerate(ORDINAL_METRICS)
    }


def _grouped_metrics(
    labels: np.ndarray, probabilities: np.ndarray, grouping: LabelGrouping, bootstrap: _Bootstrap
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
    scores = _scores(group_of_class[labels], probabilities @ membership, bootstrap)
    return {
        **scores.summary,
        "auroc": scores.auroc,
        "intervals": scores.intervals,
        "group_names": list(grouping.group_names),
        "confusion_matrix": scores.confusion.tolist(),
    }
