"""PNG plots of evaluation results.

Figures are built from :class:`matplotlib.figure.Figure` directly rather than through pyplot, so no global
figure registry or interactive backend is involved and plotting is safe from worker threads.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from transferkit.files import write_atomic

ImageLike: TypeAlias = Image.Image | np.ndarray  # a PIL image or a uint8 array, (H, W) or (H, W, C)

_DPI = 110
# Gallery thumbnails are shrunk to this many pixels on their longer side before plotting; the PNG stays small.
_THUMBNAIL_PX = 256
_GALLERY_COLUMNS = 4
# F1 bars shorter than this (on the 0..1 axis) are labelled outside the bar.
_MIN_LABELLED_BAR = 0.12
# Class names longer than this are cut with an ellipsis under gallery thumbnails, where space is narrow.
_MAX_GALLERY_LABEL = 22
# Beyond this many classes the per-cell numbers become unreadable, so only the colours are shown.
_MAX_ANNOTATED_CLASSES = 20
# Tick labels longer than this collide horizontally and are rotated.
_MAX_UPRIGHT_LABEL = 6
# A confusion matrix gives each class this many inches, so that its tick labels do not overlap, up to a
# largest panel; beyond that every k-th class is labelled.
_MATRIX_INCHES_PER_CLASS = 0.22
_MATRIX_PANEL_INCHES = (4.0, 14.0)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: Path,
    title: str = "Confusion matrix",
) -> Path:
    """Save counts and row-normalised (per-class recall) confusion matrices side by side as one PNG.

    Args:
        confusion: Square matrix of counts, rows true classes and columns predicted classes.
        class_names: Name of each class, in matrix order.
        path: Destination PNG; parent directories are created.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: If the matrix is not square or does not match ``class_names``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"confusion must be a {len(class_names)}x{len(class_names)} matrix matching class_names, "
            f"got shape {counts.shape}."
        )
    return save_figure(confusion_figure(counts, class_names, title), path)


def confusion_figure(counts: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """`plot_confusion_matrix`'s figure, sized for its number of classes."""
    row_sums = counts.sum(axis=1, keepdims=True)
    # Classes without test samples get an all-zero row instead of a division by zero.
    normalised = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    smallest, largest = _MATRIX_PANEL_INCHES
    panel = min(max(smallest, _MATRIX_INCHES_PER_CLASS * len(class_names)), largest)
    figure = Figure(figsize=(2 * panel + 2, panel + 0.5), layout="constrained")
    count_axes, recall_axes = figure.subplots(1, 2)
    _draw_matrix(count_axes, counts, class_names, "counts", lambda v: f"{int(v)}")
    # A fixed 0..1 scale makes recall colours comparable between runs.
    _draw_matrix(
        recall_axes, normalised, class_names, "row-normalised (recall)", lambda v: f"{v:.2f}", vmax=1.0
    )
    figure.suptitle(title)
    return figure


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Save loss and validation-accuracy curves against epoch as one PNG.

    Missing, ``None`` or NaN values are skipped per series. The x-axis uses each row's ``epoch`` when every
    row has one and they increase strictly; otherwise (e.g. epochs restarting per phase) rows are numbered
    1..N. A dashed vertical line marks every change of ``phase`` between consecutive rows.

    Args:
        history: One mapping per epoch with keys such as ``epoch``, ``phase``, ``train_loss``, ``val_loss``,
            ``val_accuracy`` and ``val_balanced_accuracy``.
        path: Destination PNG; parent directories are created.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``history`` is empty.
    """
    if not history:
        raise ValueError("history is empty; plot_learning_curves needs at least one epoch row.")
    epochs = _epoch_axis(history)
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    _draw_series(loss_axes, history, epochs, ("train_loss", "val_loss"), "loss")
    _draw_series(accuracy_axes, history, epochs, ("val_accuracy", "val_balanced_accuracy"), "accuracy")
    for axes in (loss_axes, accuracy_axes):
        _mark_phase_changes(axes, history, epochs)
    figure.suptitle("Learning curves")
    return save_figure(figure, path)


def plot_per_class_f1(metrics: Mapping[str, Any], path: Path) -> Path:
    """Save one horizontal F1 bar per class, with its 95 % interval as an error bar where known.

    Args:
        metrics: Output of :func:`transferkit.evaluation.compute_metrics`; reads ``per_class`` entries with
            ``class``, ``f1``, ``support`` and, when present, ``f1_interval`` (``[lo, hi]``).
        path: Destination PNG; parent directories are created.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``metrics`` has no per-class entries.
    """
    per_class = list(metrics.get("per_class", []))
    if not per_class:
        raise ValueError("metrics has no per_class entries; pass the output of compute_metrics.")
    scores = np.array([float(entry["f1"]) for entry in per_class])
    positions = np.arange(len(per_class))
    figure = Figure(figsize=(8, 1.2 + 0.32 * len(per_class)), layout="constrained")
    axes = figure.subplots()
    errors = _interval_errors([entry.get("f1_interval") for entry in per_class], scores)
    axes.barh(positions, scores, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=3)
    axes.set_yticks(positions, [f"{entry['class']} (n={entry['support']})" for entry in per_class])
    axes.invert_yaxis()  # first class on top, in the order of the per-class table
    upper_ends = scores + (errors[1] if errors is not None else 0.0)
    for y, (score, upper_end) in enumerate(zip(scores, upper_ends, strict=True)):
        # At the bar's base when the bar is long enough to hold the number, else just past its error bar.
        inside = score >= _MIN_LABELLED_BAR
        colour = "white" if inside else "black"
        x = 0.01 if inside else upper_end + 0.01
        axes.text(x, float(y), f"{score:.2f}", va="center", fontsize=8, color=colour)
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1" + (" (error bars: 95 % interval)" if errors is not None else ""))
    axes.grid(axis="x", alpha=0.3)
    figure.suptitle("Per-class F1")
    return save_figure(figure, path)


def plot_reliability(
    calibration_bins: Sequence[Mapping[str, Any]],
    path: Path,
    ece_before: float | None = None,
    ece_after: float | None = None,
) -> Path:
    """Save a reliability diagram: accuracy against confidence per bin, the diagonal, and the bin counts.

    Bars above the diagonal mean the model was under-confident in that bin, bars below it over-confident.

    Args:
        calibration_bins: One mapping per confidence bin with ``lower``, ``upper``, ``count``, ``confidence``
            (mean top-class probability) and ``accuracy``; empty bins are drawn as counts of zero only.
        path: Destination PNG; parent directories are created.
        ece_before: Expected calibration error before temperature scaling, shown in the title if given.
        ece_after: Expected calibration error of the plotted probabilities, shown in the title if given.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``calibration_bins`` is empty.
    """
    if not calibration_bins:
        raise ValueError("calibration_bins is empty; plot_reliability needs at least one bin.")
    lowers = np.array([float(b["lower"]) for b in calibration_bins])
    widths = np.array([float(b["upper"]) for b in calibration_bins]) - lowers
    counts = np.array([int(b.get("count") or 0) for b in calibration_bins])
    filled = [i for i, b in enumerate(calibration_bins) if counts[i] > 0 and _is_number(b.get("accuracy"))]
    accuracy = [float(calibration_bins[i]["accuracy"]) for i in filled]
    confidence = [float(calibration_bins[i]["confidence"]) for i in filled]
    figure = Figure(figsize=(6, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lowers[filled], accuracy, width=widths[filled], align="edge", color="#4c72b0", edgecolor="white")
    top.plot(confidence, accuracy, "o", color="#dd8452", markersize=4, label="accuracy at mean confidence")
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(lowers, counts, width=widths, align="edge", color="#8c8c8c", edgecolor="white")
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("images")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle("Reliability diagram" + _ece_text(ece_before, ece_after))
    return save_figure(figure, path)


def list_confident_mistakes(
    true_labels: Sequence[int] | np.ndarray, probabilities: np.ndarray, limit: int = 12
) -> list[int]:
    """Positions of the wrong predictions, most confident first (ties in position order), at most ``limit``.

    Args:
        true_labels: Integer class labels, shape ``(N,)``.
        probabilities: Class probabilities, shape ``(N, C)``.
        limit: Most positions returned.

    Returns:
        Positions into ``true_labels`` whose argmax prediction is wrong.
    """
    labels = np.asarray(true_labels, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    predicted = probs.argmax(axis=1) if len(labels) else labels
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][: max(limit, 0)]]


def plot_confident_mistakes(
    images: Sequence[ImageLike],
    true_labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    limit: int = 12,
) -> Path | None:
    """Save a gallery of the most confident mistakes: thumbnail, true and predicted class, its probability.

    Only the images of the mistakes shown are read from ``images``, so the caller may pass just those (with
    their labels and probability rows), as :func:`create_run_plots` does.

    Args:
        images: PIL images or uint8 arrays (``(H, W)`` or ``(H, W, C)``), aligned with ``true_labels``.
        true_labels: Integer class labels, shape ``(N,)``.
        probabilities: Class probabilities, shape ``(N, C)``.
        class_names: Name of each of the ``C`` classes.
        path: Destination PNG; parent directories are created.
        limit: Most mistakes shown, the most confident first.

    Returns:
        ``path``, or ``None`` when no prediction is wrong; nothing is written then.

    Raises:
        ValueError: If the lengths or shapes of the inputs disagree.
    """
    labels = np.asarray(true_labels, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    if len(images) != len(labels) or probs.shape != (len(labels), len(class_names)):
        raise ValueError(
            f"images ({len(images)}), true_labels ({len(labels)}) and probabilities {probs.shape} must "
            f"describe the same images, with one probability per class in class_names ({len(class_names)})."
        )
    shown = list_confident_mistakes(labels, probs, limit)
    if not shown:
        return None
    columns = min(_GALLERY_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.9 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, position in zip(grid.flat, shown, strict=False):
        predicted = int(probs[position].argmax())
        thumbnail = _thumbnail(images[position])
        axes.imshow(thumbnail, cmap="gray" if thumbnail.ndim == 2 else None, vmin=0, vmax=255)
        axes.set_title(
            f"true: {_short(class_names[labels[position]])}\n"
            f"predicted: {_short(class_names[predicted])}\np = {probs[position, predicted]:.2f}",
            fontsize=8,
        )
    figure.suptitle("Most confident mistakes")
    return save_figure(figure, path)


def plot_range_test(rates: Sequence[float], losses: Sequence[float], chosen: float, path: Path) -> Path:
    """The smoothed training loss against the learning rate of the top layer group, the chosen rate marked."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(rates, losses)
    axes.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen: {chosen:.2g}")
    axes.set(xscale="log", xlabel="learning rate (top layer group)", ylabel="training loss (smoothed)")
    axes.set_title("Learning-rate range test")
    axes.legend()
    return save_figure(figure, path)


def precision_recall_curve(
    true_labels: Sequence[int] | np.ndarray, scores: np.ndarray, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of class `index` when the k images with the highest `scores` are flagged as
    it, for k = 1 .. N (ties in the order given).

    Shape:
        true_labels, scores: (N,). Returns two (N,) arrays.
    """
    positive = np.asarray(true_labels) == index
    hits = np.cumsum(positive[np.argsort(-np.asarray(scores), kind="stable")])
    return hits / max(int(positive.sum()), 1), hits / np.arange(1, len(hits) + 1)


def plot_operating_point(
    true_labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    operating_point: Mapping[str, Any],
    path: Path,
) -> Path:
    """Save the precision-recall curve of a recall target's class on test, with the run's threshold.

    The class is predicted when its probability reaches a threshold, so every threshold is one point of
    the curve; the run's own (chosen on held-out images) is marked, beside the target recall.

    Args:
        true_labels: Test labels, shape ``(N,)``.
        probabilities: Test class probabilities, shape ``(N, C)``.
        operating_point: ``metrics["operating_point"]`` of
            :func:`transferkit.evaluation.metrics.operating_point_metrics`.
        path: Destination PNG.

    Returns:
        ``path``.
    """
    point = operating_point["point"]
    index, name = int(point["class_index"]), str(point["class_name"])
    recall, precision = precision_recall_curve(true_labels, np.asarray(probabilities)[:, index], index)
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(recall, precision, color="#4c72b0", label="every threshold")
    axes.axvline(
        point["recall_target"], color="tab:gray", linestyle="--", label=f"target {point['recall_target']:.0%}"
    )
    if operating_point.get("precision") is not None:
        axes.scatter(
            [operating_point["recall"]],
            [operating_point["precision"]],
            color="tab:red",
            zorder=3,
            label=f"threshold {point['threshold']:.3g}, chosen on {point['chosen_on']}",
        )
    axes.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel=f"recall of {name}", ylabel=f"precision of {name}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.suptitle(f"Operating point for {name} (test)")
    return save_figure(figure, path)


def create_run_plots(
    plots_dir: Path,
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    true_labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    open_image: Callable[[int], ImageLike],
    range_test: tuple[Sequence[float], Sequence[float], float] | None = None,
) -> dict[str, Path]:
    """Every plot of a run's report, as caption -> PNG path, in report order.

    The operating point's precision-recall curve is drawn when ``metrics`` has an ``operating_point``
    (a recall target), the reliability diagram when it has ``calibration`` bins; the gallery of confident
    mistakes is left out when no test prediction is wrong.

    Args:
        plots_dir: Folder the PNGs are written into.
        metrics: Test-split metrics of :func:`transferkit.evaluation.compute_metrics`.
        history: One mapping per epoch, as for :func:`plot_learning_curves`.
        class_names: Name of each class.
        true_labels: Test labels, shape ``(N,)``.
        probabilities: Test class probabilities, shape ``(N, C)``.
        open_image: Test image at a position into ``true_labels``; called only for the mistakes shown.
        range_test: Rates, losses and the chosen rate of a learning-rate range test (``--lr auto``).

    Returns:
        Caption -> PNG path.
    """
    plots_dir = Path(plots_dir)
    plots = {
        "Confusion matrix (test)": plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, plots_dir / "confusion_matrix.png"
        ),
        "Learning curves": plot_learning_curves(history, plots_dir / "learning_curves.png"),
        "Per-class F1 (test)": plot_per_class_f1(metrics, plots_dir / "per_class_f1.png"),
    }
    if range_test is not None:
        plots["Learning-rate range test"] = plot_range_test(*range_test, plots_dir / "lr_range_test.png")
    if metrics.get("operating_point"):
        plots["Operating point: precision and recall (test)"] = plot_operating_point(
            true_labels, probabilities, metrics["operating_point"], plots_dir / "operating_point.png"
        )
    calibration = metrics.get("calibration") or {}
    if calibration.get("bins"):
        scaling = metrics.get("temperature_scaling") or {}
        plots["Reliability diagram (test)"] = plot_reliability(
            calibration["bins"],
            plots_dir / "reliability.png",
            ece_before=scaling.get("ece_before"),
            ece_after=scaling.get("ece_after", calibration.get("ece")),
        )
    shown = list_confident_mistakes(true_labels, probabilities)
    gallery = plot_confident_mistakes(
        [open_image(position) for position in shown],
        np.asarray(true_labels)[shown],
        np.asarray(probabilities)[shown],
        class_names,
        plots_dir / "confident_mistakes.png",
    )
    if gallery is not None:
        plots["Most confident mistakes (test)"] = gallery
    return plots


def _draw_matrix(
    axes: Axes,
    values: np.ndarray,
    class_names: Sequence[str],
    title: str,
    fmt: Callable[[float], str],
    *,
    vmax: float | None = None,
) -> None:
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    axes.figure.colorbar(image, ax=axes, shrink=0.8)
    most_labels = _MATRIX_PANEL_INCHES[1] / _MATRIX_INCHES_PER_CLASS  # that fit the largest panel
    ticks = range(0, len(class_names), max(1, math.ceil(len(class_names) / most_labels)))
    names = [str(class_names[tick]) for tick in ticks]
    rotate = max((len(name) for name in names), default=0) > _MAX_UPRIGHT_LABEL
    axes.set_xticks(ticks, names, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(class_names) <= _MAX_ANNOTATED_CLASSES:
        _annotate_cells(axes, values, fmt, threshold=(vmax or float(values.max())) / 2)


def _annotate_cells(axes: Axes, values: np.ndarray, fmt: Callable[[float], str], *, threshold: float) -> None:
    # White text on dark cells (above half the colour scale), black on light ones, so numbers stay legible.
    fontsize = max(6, 11 - values.shape[0] // 3)
    for (row, col), value in np.ndenumerate(values):
        colour = "white" if value > threshold else "black"
        axes.text(col, row, fmt(value), ha="center", va="center", color=colour, fontsize=fontsize)


def _epoch_axis(history: Sequence[Mapping[str, Any]]) -> list[float]:
    numbers = [float(row["epoch"]) for row in history if _is_number(row.get("epoch"))]
    increasing = all(b > a for a, b in itertools.pairwise(numbers))
    if len(numbers) == len(history) and increasing:
        return numbers
    return [float(i + 1) for i in range(len(history))]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return False
    return math.isfinite(float(value))


def _draw_series(
    axes: Axes,
    history: Sequence[Mapping[str, Any]],
    epochs: Sequence[float],
    keys: Sequence[str],
    ylabel: str,
) -> None:
    drawn = False
    for key in keys:
        points = [
            (x, float(row[key])) for x, row in zip(epochs, history, strict=True) if _is_number(row.get(key))
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            # Markers keep a single-epoch run visible; a lone point has no line segment.
            axes.plot(xs, ys, marker="o", markersize=4, label=key)
            drawn = True
    axes.set_xlabel("epoch")
    # Epochs are whole numbers; fractional ticks like 0.98 only confuse.
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=axes.transAxes)


def _mark_phase_changes(axes: Axes, history: Sequence[Mapping[str, Any]], epochs: Sequence[float]) -> None:
    for i in range(1, len(history)):
        phase = history[i].get("phase")
        if phase is None or phase == history[i - 1].get("phase"):
            continue
        boundary = (epochs[i - 1] + epochs[i]) / 2
        axes.axvline(boundary, color="grey", linestyle="--", linewidth=1)
        # x in data units, y in axes fraction, so the label sits at the top whatever the value range.
        axes.text(
            boundary,
            0.98,
            f" {phase}",
            transform=axes.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=8,
            color="grey",
        )


def _interval_errors(intervals: Sequence[Any], values: np.ndarray) -> np.ndarray | None:
    """Asymmetric error bars, shape ``(2, N)``, from ``[lo, hi]`` intervals; None when none is known."""
    if all(interval is None for interval in intervals):
        return None
    errors = np.zeros((2, len(values)))
    for i, interval in enumerate(intervals):
        if interval is not None:
            # Clipped at zero: a bootstrap percentile interval need not contain the point estimate.
            errors[:, i] = max(values[i] - float(interval[0]), 0.0), max(float(interval[1]) - values[i], 0.0)
    return errors


def _ece_text(before: float | None, after: float | None) -> str:
    if before is not None and after is not None:
        return f" (ECE {before:.3f} before scaling, {after:.3f} after)"
    if after is not None or before is not None:
        return f" (ECE {after if after is not None else before:.3f})"
    return ""


def _thumbnail(image: ImageLike) -> np.ndarray:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.squeeze(np.asarray(image)))
    # Anything but 8-bit grey is shown as RGB; an alpha channel (which may hold a spectral band) is dropped.
    picture = picture.convert("L" if picture.mode == "L" else "RGB")
    picture.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX))
    return np.asarray(picture)


def _short(name: str) -> str:
    name = str(name)
    return name if len(name) <= _MAX_GALLERY_LABEL else name[: _MAX_GALLERY_LABEL - 1] + "…"


def save_figure(figure: Figure, path: Path) -> Path:
    """Writes the figure as PNG atomically (a crash leaves the old plot or the new one, never half)."""
    buffer = io.BytesIO()
    # A tight box with a small margin: the constrained layout alone can clip the lowest axis label by a pixel.
    figure.savefig(buffer, dpi=_DPI, format="png", bbox_inches="tight", pad_inches=0.08)
    write_atomic(Path(path), buffer.getvalue())
    # Drop the artists now rather than waiting for the garbage collector to break reference cycles.
    figure.clear()
    return path
