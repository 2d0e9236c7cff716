"""Everything a finished run leaves behind: metrics, predictions, plots, reports and the model bundle."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from transferkit.config import FitConfig
from transferkit.data.cache import SplitImages
from transferkit.data.checks import DataReport
from transferkit.data.source import ImageSource
from transferkit.evaluation.metrics import compute_metrics, headline_metrics
from transferkit.evaluation.plots import plot_confusion_matrix, plot_learning_curves
from transferkit.evaluation.report import ReportContext, write_reports
from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.files import write_atomic, write_json
from transferkit.run_dir import RunPaths
from transferkit.training.module import TransferModule
from transferkit.transforms.augment import ImageTransform


@dataclass(frozen=True)
class TestEvaluation:
    """Predictions on the test split and the metrics computed from them."""

    source: ImageSource
    indices: list[int]
    probabilities: np.ndarray
    metrics: dict[str, Any]
    views: tuple[str, ...] = ("identity",)  # names of the test-time views averaged (TEST_VIEWS)


def evaluate_test(
    module: TransferModule, source: ImageSource, test: SplitImages, views: Sequence[ImageTransform]
) -> TestEvaluation:
    """Class probabilities of every test image (averaged over `views`) and the metrics they give."""
    probabilities = module.predict_proba(test.images, views).numpy()
    metrics = compute_metrics(test.labels.numpy(), probabilities, source.class_names, source.groupings)
    names = tuple(view.__name__ for view in views)
    return TestEvaluation(source, test.indices, probabilities, metrics, names)


def write_run_outputs(
    paths: RunPaths,
    config: FitConfig,
    evaluation: TestEvaluation,
    *,
    module: TransferModule,
    history: list[dict[str, Any]],
    counts: dict[str, dict[str, int]],
    wall_time_s: float,
    data_checks: DataReport | None = None,
) -> None:
    """metrics.json, predictions.csv, the model bundle, plots, both reports and data_checks.json if given."""
    source, metrics = evaluation.source, evaluation.metrics
    headline = headline_metrics(metrics)
    write_json(paths.metrics, {"test": metrics, "headline": headline, "wall_time_s": wall_time_s})
    if data_checks is not None:
        write_json(paths.data_checks, data_checks.to_dict())
    write_predictions(paths, evaluation)
    info = BundleInfo(source.class_names, headline, config.data.name, evaluation.views, source.channels)
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
        phases=[asdict(p) for p in module.strategy.phases()],
        config=config.to_dict(),
        plots=plots,
        notes=list(source.notes),
        wall_time_s=wall_time_s,
        data_checks=data_checks,
    )
    write_reports(context)


def write_predictions(paths: RunPaths, evaluation: TestEvaluation) -> None:
    """predictions.csv: one row per test image with its true and predicted label and every probability."""
    names = evaluation.source.class_names
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "true", "predicted", *(f"p_{name}" for name in names)])
    for index, row in zip(evaluation.indices, evaluation.probabilities, strict=True):
        record = evaluation.source.records[index]
        predicted = names[int(np.argmax(row))]
        writer.writerow([record.path, names[record.label], predicted, *(f"{p:.6f}" for p in row)])
    write_atomic(paths.predictions, text.getvalue().encode())
