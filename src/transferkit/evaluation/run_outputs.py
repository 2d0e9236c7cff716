"""Everything a finished run leaves behind: metrics, predictions, plots, reports and the model bundle."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.config import FitConfig
from transferkit.data.source import ImageSource
from transferkit.evaluation.metrics import headline_metrics
from transferkit.evaluation.plots import plot_confusion_matrix, plot_learning_curves
from transferkit.evaluation.report import ReportContext, write_reports
from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.run_dir import RunPaths, write_json
from transferkit.training.callbacks import write_atomic
from transferkit.training.module import TransferModule


def write_run_outputs(
    paths: RunPaths,
    config: FitConfig,
    source: ImageSource,
    test_indices: Sequence[int],
    probabilities: np.ndarray,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    module: TransferModule,
    counts: dict[str, dict[str, int]],
    image_size: int,
    wall_time_s: float,
) -> None:
    write_json(paths.metrics, {"test": metrics, "headline": headline_metrics(metrics), "wall_time_s": wall_time_s})
    write_predictions(paths, source, test_indices, probabilities)
    info = BundleInfo(source.class_names, image_size, headline_metrics(metrics), config.data.name)
    save_bundle(module.backbone, info, paths.model)
    plots = {
        "Confusion matrix (test)": plot_confusion_matrix(
            metrics["confusion_matrix"], source.class_names, paths.plots / "confusion_matrix.png"
        ),
        "Learning curves": plot_learning_curves(history, paths.plots / "learning_curves.png"),
    }
    context = ReportContext(
        title=f"{config.data.name} · {config.model.name} · {config.train.strategy}",
        run_dir=paths.root,
        metrics=metrics,
        data_summary=counts,
        strategy=config.train.strategy,
        phases=[vars(p) for p in module.strategy.phases()],
        config=config.to_dict(),
        plots=plots,
        notes=list(source.notes),
        wall_time_s=wall_time_s,
    )
    write_reports(context)


def write_predictions(
    paths: RunPaths, source: ImageSource, indices: Sequence[int], probabilities: np.ndarray
) -> None:
    """predictions.csv: one row per test image with its true and predicted label and every probability."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "true", "predicted", *(f"p_{name}" for name in source.class_names)])
    for index, row in zip(indices, probabilities, strict=True):
        record = source.records[index]
        predicted = source.class_names[int(np.argmax(row))]
        writer.writerow([record.path, source.class_names[record.label], predicted, *(f"{p:.6f}" for p in row)])
    write_atomic(paths.predictions, text.getvalue().encode())
