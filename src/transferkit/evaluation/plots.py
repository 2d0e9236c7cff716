"""PNG plots of evaluation results.

Figures are built from :class:`matplotlib.figure.Figure` directly rather than through pyplot, so no global
figure registry or interactive backend is involved and plotting is safe from worker threads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_DPI = 110
# Beyond this many classes the per-cell numbers become unreadable, so only the colours are shown.
_MAX_ANNOTATED_CLASSES = 20
# Tick labels longer than this collide horizontally and are rotated.
_MAX_UPRIGHT_LABEL = 6


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
    row_sums = counts.sum(axis=1, keepdims=True)
    # Classes without test samples get an all-zero row instead of a division by zero.
    normalised = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    count_axes, recall_axes = figure.subplots(1, 2)
    _draw_matrix(count_axes, counts, class_names, "counts", lambda v: f"{int(v)}")
    # A fixed 0..1 scale makes recall colours comparable between runs.
    _draw_matrix(
        recall_axes, normalised, class_names, "row-normalised (recall)", lambda v: f"{v:.2f}", vmax=1.0
    )
    figure.suptitle(title)
    return _save(figure, path)


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
    return _save(figure, path)


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
    ticks = np.arange(len(class_names))
    rotate = max((len(name) for name in class_names), default=0) > _MAX_UPRIGHT_LABEL
    axes.set_xticks(
        ticks, [str(n) for n in class_names], rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    axes.set_yticks(ticks, [str(n) for n in class_names])
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


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, format="png")
    # Drop the artists now rather than waiting for the garbage collector to break reference cycles.
    figure.clear()
    return path
