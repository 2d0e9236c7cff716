"""Everything a finished run leaves behind: metrics, predictions, plots, reports and the model bundle."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, astuple, dataclass
from typing import Any

import numpy as np

from transferkit.config import FitConfig, method_name
from transferkit.data.cache import SplitImages
from transferkit.data.checks import DataReport
from transferkit.data.source import ImageSource
from transferkit.evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    tempered_probabilities,
)
from transferkit.evaluation.metrics import compute_metrics, headline_metrics
from transferkit.evaluation.plots import create_run_plots
from transferkit.evaluation.report import ReportContext, write_reports
from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.export.predictor import Classifier
from transferkit.files import write_atomic, write_json
from transferkit.models import Backbone
from transferkit.run_dir import RunPaths
from transferkit.training.loop import TrainingResult
from transferkit.training.strategies import Phase
from transferkit.transforms.augment import identity


@dataclass(frozen=True)
class TestEvaluation:
    """Predictions on the test split and the metrics computed from them.

    Attributes:
        probabilities: calibrated test probabilities (N, classes), as the exported bundle predicts them.
        metrics: compute_metrics' output on them, plus ``temperature_scaling`` and ``tta`` (when more
            than one view was averaged).
        views: names of the test-time views averaged (TEST_VIEWS).
        temperature: the calibration temperature fitted on the validation split (1.0: none).
        calibration: temperature, ECE on the test split before and after, and what it was fitted on.
        tta: accuracy with the identity view alone, with every view, and the gain; None for one view.
    """

    source: ImageSource
    indices: list[int]
    probabilities: np.ndarray
    metrics: dict[str, Any]
    views: tuple[str, ...] = ("identity",)
    temperature: float = 1.0
    calibration: dict[str, Any] | None = None
    tta: dict[str, Any] | None = None


def evaluate_test(
    classifier: Classifier, source: ImageSource, test: SplitImages, val: SplitImages | None = None
) -> tuple[Classifier, TestEvaluation]:
    """The classifier calibrated on `val`, and its probabilities and metrics on every test image.

    `fit` evaluates through the same `Classifier` that `load` returns, so the run's metrics are what
    the bundle predicts. The temperature minimizes the validation NLL of the view-averaged tempered
    softmax (`fit_temperature`); without a validation split it stays 1.
    """
    labels = test.labels.numpy()
    logits = classifier.view_logits(test.images)
    temperature = 1.0
    if val is not None and len(val.labels) > 0:
        temperature = fit_temperature(classifier.view_logits(val.images), val.labels.numpy())
    classifier = classifier.with_temperature(temperature)
    probabilities = tempered_probabilities(logits, temperature)
    calibration = {
        "temperature": temperature,
        "ece_before": expected_calibration_error(tempered_probabilities(logits), labels),
        "ece_after": expected_calibration_error(probabilities, labels),
        "fitted_on": f"val ({0 if val is None else len(val.labels)} images)",
    }
    metrics = compute_metrics(labels, probabilities, source.class_names, source.groupings)
    names = tuple(view.__name__ for view in classifier.views)
    tta = tta_gain(classifier, test, logits, metrics["accuracy"])
    metrics["temperature_scaling"] = calibration
    if tta is not None:
        metrics["tta"] = tta
    evaluation = TestEvaluation(
        source, test.indices, probabilities, metrics, names, temperature, calibration, tta
    )
    return classifier, evaluation


def tta_gain(
    classifier: Classifier, test: SplitImages, logits: np.ndarray, accuracy_with: float
) -> dict[str, Any] | None:
    """Accuracy with the identity view alone against all of the classifier's views (logits (views, N,
    classes)); None when the identity view is the only one."""
    views = [view.__name__ for view in classifier.views]
    if views == [identity.__name__]:
        return None
    if identity.__name__ in views:
        plain = logits[views.index(identity.__name__)]
    else:
        plain = classifier.view_logits(test.images, views=(identity,))[0]
    accuracy_without = float(np.mean(plain.argmax(axis=1) == test.labels.numpy()))
    return {
        "views": views,
        "accuracy_without": accuracy_without,
        "accuracy_with": accuracy_with,
        "gain": accuracy_with - accuracy_without,
    }


def write_run_outputs(
    paths: RunPaths,
    config: FitConfig,
    evaluation: TestEvaluation,
    *,
    backbone: Backbone,
    phases: list[Phase],
    training: TrainingResult,
    counts: dict[str, dict[str, int]],
    wall_time_s: float,
    data_checks: DataReport | None = None,
) -> None:
    """metrics.json, predictions.csv, the model bundle, plots, both reports and data_checks.json if given."""
    source, metrics = evaluation.source, evaluation.metrics
    headline = headline_metrics(metrics)
    run_level = {"calibration": evaluation.calibration, "tta": evaluation.tta}
    extras = {key: value for key, value in run_level.items() if value is not None}
    write_json(paths.metrics, {"test": metrics, "headline": headline, **extras, "wall_time_s": wall_time_s})
    if data_checks is not None:
        write_json(paths.data_checks, data_checks.to_dict())
    write_predictions(paths, evaluation)
    info = BundleInfo(
        source.class_names,
        headline,
        config.data.name,
        evaluation.views,
        source.channels,
        temperature=evaluation.temperature,
        intervals={name: bounds for name, bounds in metrics.get("intervals", {}).items() if name in headline},
        test_images=len(evaluation.indices),
    )
    save_bundle(backbone, info, paths.model)
    plots = create_run_plots(
        paths.plots,
        metrics,
        training.history,
        source.class_names,
        true_labels=[source.records[i].label for i in evaluation.indices],
        probabilities=evaluation.probabilities,
        open_image=lambda position: source.open(source.records[evaluation.indices[position]]),
        range_test=astuple(training.range_test) if training.range_test else None,
    )
    context = ReportContext(
        title=f"{config.data.name} · {config.model.name} · {method_name(config.train.strategy)}",
        run_dir=paths.root,
        metrics=metrics,
        data_summary=counts,
        strategy=method_name(config.train.strategy),
        phases=[asdict(p) for p in phases],
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
