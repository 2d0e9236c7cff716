"""Plots are written as valid PNG files for typical and edge-case inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from transferkit.evaluation import plot_confusion_matrix, plot_learning_curves


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 500
        assert image.height > 300


def test_confusion_matrix_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "confusion.png"
    names = ["functional", "mildly_defective", "likely_defective", "defective"]
    result = plot_confusion_matrix([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 1, 1, 4]], names, path)

    assert result == path
    _assert_png(path)


def test_confusion_matrix_rejects_mismatched_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matching class_names"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "c.png")


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
