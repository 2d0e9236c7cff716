"""Plots are written as valid PNG files for typical and edge-case inputs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from transferkit.evaluation import plot_confusion_matrix, plot_learning_curves
from transferkit.evaluation.metrics import operating_point_metrics
from transferkit.evaluation.operating_point import RecallTarget, operating_point
from transferkit.evaluation.plots import (
    confusion_figure,
    create_run_plots,
    list_confident_mistakes,
    plot_confident_mistakes,
    plot_operating_point,
    plot_per_class_f1,
    plot_reliability,
    precision_recall_curve,
)


def _assert_png(path: Path | None, min_width: int = 500, min_height: int = 300) -> None:
    assert path is not None and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > min_width
        assert image.height > min_height


def test_confusion_matrix_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "confusion.png"
    names = ["functional", "mildly_defective", "likely_defective", "defective"]
    result = plot_confusion_matrix([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 1, 1, 4]], names, path)

    assert result == path
    _assert_png(path)


def test_confusion_matrix_rejects_mismatched_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matching class_names"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "c.png")


@pytest.mark.parametrize("classes", [30, 120])
def test_confusion_matrix_tick_labels_do_not_overlap(classes: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = [f"class_{index:03d}" for index in range(classes)]
    figure = confusion_figure(np.eye(classes, dtype=np.int64), names, "Confusion matrix")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    for axes in figure.axes[:2]:  # the two matrices, then their colour bars
        boxes = sorted(
            (label.get_window_extent(renderer) for label in axes.get_yticklabels()), key=lambda b: b.y0
        )
        assert len(boxes) >= 50 or len(boxes) == classes
        assert all(lower.y1 <= upper.y0 for lower, upper in itertools.pairwise(boxes))


def test_learning_curves_single_row(tmp_path: Path) -> None:
    path = plot_learning_curves([{"epoch": 1, "phase": "head", "train_loss": 0.9}], tmp_path / "curves.png")
    _assert_png(path)


def test_learning_curves_with_phase_changes_and_gaps(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "phase": "head", "train_loss": 1.2, "val_loss": 1.0, "val_accuracy": 0.5},
        {"epoch": 2, "phase": "head", "train_loss": 1.0, "val_loss": None, "val_accuracy": 0.55},
        {"epoch": 3, "phase": "fine-tune", "train_loss": 0.8, "val_loss": 0.7, "val_accuracy": math.nan},
        {"epoch": 4, "phase": "fine-tune", "train_loss": 0.6, "val_loss": 0.6, "val_balanced_accuracy": 0.7},
    ]
    _assert_png(plot_learning_curves(history, tmp_path / "curves.png"))


def test_learning_curves_with_restarting_epochs(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "phase": "head", "train_loss": 1.0},
        {"epoch": 1, "phase": "full", "train_loss": 0.5},
    ]
    _assert_png(plot_learning_curves(history, tmp_path / "curves.png"))


def test_learning_curves_rejects_empty_history(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history is empty"):
        plot_learning_curves([], tmp_path / "curves.png")


def _per_class(with_intervals: bool) -> dict[str, object]:
    rows = []
    for i, name in enumerate(["cat", "dog", "a rather long class name", "fox"]):
        row = {"class": name, "precision": 0.7, "recall": 0.6, "f1": 0.2 * i + 0.1, "support": 10 + i}
        if with_intervals:
            row["f1_interval"] = [max(0.0, 0.2 * i - 0.05), min(1.0, 0.2 * i + 0.3)]
        rows.append(row)
    return {"per_class": rows}


@pytest.mark.parametrize("with_intervals", [True, False])
def test_per_class_f1_png(tmp_path: Path, with_intervals: bool) -> None:
    path = plot_per_class_f1(_per_class(with_intervals), tmp_path / "plots" / "f1.png")
    assert path == tmp_path / "plots" / "f1.png"
    _assert_png(path, min_height=200)


def test_per_class_f1_rejects_metrics_without_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_class"):
        plot_per_class_f1({"accuracy": 0.5}, tmp_path / "f1.png")


def _bins(counts: list[int]) -> list[dict[str, float]]:
    edges = np.linspace(0, 1, len(counts) + 1)
    return [
        {"lower": lo, "upper": hi, "count": n, "confidence": (lo + hi) / 2, "accuracy": lo if n else 0.0}
        for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


@pytest.mark.parametrize(("ece_before", "ece_after"), [(0.12, 0.03), (None, 0.05), (None, None)])
def test_reliability_png(tmp_path: Path, ece_before: float | None, ece_after: float | None) -> None:
    bins = _bins([0, 0, 0, 1, 3, 5, 8, 12, 30, 60])  # empty low-confidence bins, as usual
    _assert_png(plot_reliability(bins, tmp_path / "reliability.png", ece_before, ece_after))


def test_reliability_rejects_no_bins(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration_bins is empty"):
        plot_reliability([], tmp_path / "reliability.png")


def test_confident_mistakes_are_ordered_by_confidence() -> None:
    labels = [0, 1, 2, 0, 1]
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.95, 0.05, 0.0]])
    assert list_confident_mistakes(labels, probs) == [4, 3, 1]
    assert list_confident_mistakes(labels, probs, limit=2) == [4, 3]
    assert list_confident_mistakes([0], np.array([[1.0, 0.0, 0.0]])) == []


def _gallery_inputs(num_images: int, num_wrong: int) -> tuple[list[object], list[int], np.ndarray]:
    rng = np.random.default_rng(0)
    kinds = [
        lambda: Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)),
        lambda: Image.fromarray(rng.integers(0, 255, (800, 500), dtype=np.uint8)),  # large, grey
        lambda: rng.integers(0, 255, (30, 30), dtype=np.uint8),
        lambda: rng.integers(0, 255, (30, 30, 1), dtype=np.uint8),
        lambda: rng.integers(0, 255, (30, 30, 4), dtype=np.uint8),  # a fourth band, not shown
        lambda: Image.new("I;16", (20, 20), 300),
    ]
    images = [kinds[i % len(kinds)]() for i in range(num_images)]
    labels = [i % 3 for i in range(num_images)]
    probs = np.full((num_images, 3), 0.1)
    for i, label in enumerate(labels):
        probs[i, (label + 1) % 3 if i < num_wrong else label] = 0.8
    return images, labels, probs


@pytest.mark.parametrize(("num_images", "num_wrong"), [(20, 14), (6, 6), (5, 1)])
def test_confident_mistakes_gallery(tmp_path: Path, num_images: int, num_wrong: int) -> None:
    images, labels, probs = _gallery_inputs(num_images, num_wrong)
    names = ["cat", "dog", "an extremely long class name that gets shortened"]
    path = plot_confident_mistakes(images, labels, probs, names, tmp_path / "mistakes.png", limit=12)
    assert path == tmp_path / "mistakes.png"
    _assert_png(path, min_width=250, min_height=250)


def test_confident_mistakes_without_mistakes_write_nothing(tmp_path: Path) -> None:
    images, labels, probs = _gallery_inputs(4, num_wrong=0)
    path = tmp_path / "mistakes.png"
    assert plot_confident_mistakes(images, labels, probs, ["a", "b", "c"], path) is None
    assert not path.exists()


def test_confident_mistakes_reject_misaligned_inputs(tmp_path: Path) -> None:
    images, labels, probs = _gallery_inputs(4, num_wrong=2)
    with pytest.raises(ValueError, match="same images"):
        plot_confident_mistakes(images[:3], labels, probs, ["a", "b", "c"], tmp_path / "m.png")


def test_run_plots_open_only_the_mistakes_shown(tmp_path: Path) -> None:
    images, labels, probs = _gallery_inputs(30, num_wrong=15)
    opened: list[int] = []

    def open_image(position: int) -> object:
        opened.append(position)
        return images[position]

    metrics = {
        **_per_class(with_intervals=True),
        "confusion_matrix": [[8, 1, 1], [1, 8, 1], [1, 1, 8]],
        "calibration": {"ece": 0.04, "bins": _bins([0, 0, 0, 0, 0, 0, 0, 5, 10, 15])},
        "temperature_scaling": {"temperature": 1.4, "ece_before": 0.1, "ece_after": 0.04, "fitted_on": "val"},
    }
    plots = create_run_plots(
        tmp_path / "plots",
        metrics,
        [{"epoch": 1, "phase": "head", "train_loss": 1.0}],
        ["a", "b", "c"],
        true_labels=labels,
        probabilities=probs,
        open_image=open_image,
    )
    assert sorted(opened) == list(range(12))  # the 12 most confident of 15 mistakes, tied at p = 0.8
    assert [path.name for path in plots.values()] == [
        "confusion_matrix.png",
        "learning_curves.png",
        "per_class_f1.png",
        "reliability.png",
        "confident_mistakes.png",
    ]
    for path in plots.values():
        _assert_png(path, min_height=200)


def _minimal_run_plots(
    folder: Path, metrics: dict, labels: np.ndarray, probs: np.ndarray, open_image: Callable[[int], Any]
) -> dict[str, Path]:
    """The run plots of a 3-class run with one epoch of history and no range test."""
    return create_run_plots(
        folder,
        {**_per_class(with_intervals=False), "confusion_matrix": np.eye(3, dtype=int).tolist(), **metrics},
        [{"epoch": 1, "train_loss": 1.0}],
        ["a", "b", "c"],
        true_labels=labels,
        probabilities=probs,
        open_image=open_image,
    )


def test_run_plots_leave_out_what_is_missing(tmp_path: Path) -> None:
    _, labels, probs = _gallery_inputs(6, num_wrong=0)
    plots = _minimal_run_plots(
        tmp_path, {}, labels, probs, lambda position: pytest.fail("no mistake, nothing to open")
    )
    assert list(plots) == ["Confusion matrix (test)", "Learning curves", "Per-class F1 (test)"]


def _rare_class(seed: int, count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=count, p=[0.5, 0.3, 0.2])
    logits = rng.normal(0, 1.0, (count, 3))
    logits[np.arange(count), labels] += 1.5
    return labels, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def _scored_point() -> tuple[np.ndarray, np.ndarray, float, dict]:
    """Test labels and probabilities of a rare class, the threshold chosen for 90 % recall of it on
    other (held-out) images, and its test scores."""
    held_out_labels, held_out = _rare_class(0)
    labels, probs = _rare_class(1)
    point = operating_point(RecallTarget("c", 2, 0.9), held_out, held_out_labels, "val (200 images)")
    return labels, probs, point.threshold, operating_point_metrics(labels, probs, point)


def test_the_operating_point_lies_on_the_test_precision_recall_curve(tmp_path: Path) -> None:
    labels, probs, threshold, scores = _scored_point()
    recall, precision = precision_recall_curve(labels, probs[:, 2], 2)
    flagged = int(np.sum(probs[:, 2] >= threshold))  # the rule flags exactly these images
    assert (recall[flagged - 1], precision[flagged - 1]) == pytest.approx(
        (scores["recall"], scores["precision"])
    )
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(np.mean(labels == 2))
    _assert_png(plot_operating_point(labels, probs, scores, tmp_path / "point.png"))


def test_run_plots_show_the_operating_point_when_the_run_has_one(tmp_path: Path) -> None:
    labels, probs, _, scores = _scored_point()
    plots = _minimal_run_plots(
        tmp_path, {"operating_point": scores}, labels, probs, lambda position: np.zeros((8, 8), np.uint8)
    )
    assert plots["Operating point: precision and recall (test)"].name == "operating_point.png"
