"""Everything a finished run leaves behind: metrics, predictions, plots, reports and the model bundle."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.api.cross_validation import CrossValidation
from transferkit.api.model_choice import ModelChoice
from transferkit.config import FitConfig, method_name
from transferkit.data.cache import SplitImages
from transferkit.data.checks import DataReport
from transferkit.data.source import ImageSource
from transferkit.evaluation.calibration import (
    CalibrationSet,
    expected_calibration_error,
    tempered_probabilities,
)
from transferkit.evaluation.metrics import compute_metrics, headline_metrics, operating_point_metrics
from transferkit.evaluation.operating_point import OperatingPoint, RecallTarget, decide, operating_point
from transferkit.evaluation.plots import create_run_plots
from transferkit.evaluation.report import ReportContext, write_reports
from transferkit.export.bundle import BundleInfo, OtherTask, save_bundle
from transferkit.export.predictor import Classifier
from transferkit.files import write_atomic, write_json
from transferkit.models import Backbone
from transferkit.progress import progress_task
from transferkit.run_dir import RunPaths
from transferkit.training.interpolation import WeightChoice
from transferkit.training.loop import TrainingResult
from transferkit.training.semi import PoolCheck
from transferkit.training.strategies import Phase
from transferkit.transforms.views import identity

logger = logging.getLogger(__name__)
# test images per step of the progress bar: a whole number of full batches for 1, 2, 4 or 8 views
_PROGRESS_CHUNK = 128


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
        operating_point: the threshold chosen for a recall target on the calibration set, or None.
        inference: which backend ran the test predictions and why (`InferenceChoice`), or None.
        translation: the ONNX graph that ran them (the bundle keeps it as model.onnx), or None: PyTorch.
    """

    source: ImageSource
    indices: list[int]
    probabilities: np.ndarray
    metrics: dict[str, Any]
    views: tuple[str, ...] = ("identity",)
    temperature: float = 1.0
    calibration: dict[str, Any] | None = None
    tta: dict[str, Any] | None = None
    operating_point: OperatingPoint | None = None
    inference: dict[str, Any] | None = None
    translation: bytes | None = None


def evaluate_test(
    classifier: Classifier,
    source: ImageSource,
    test: SplitImages,
    calibration: CalibrationSet,
    recall_target: RecallTarget | None = None,
) -> TestEvaluation:
    """The classifier's probabilities and metrics on every test image, calibrated on `calibration`.

    `fit` evaluates through the same `Classifier` that `load` returns, so the run's metrics are what
    the bundle predicts. The temperature minimizes the NLL of the view-averaged tempered softmax on the
    held-out calibration set (`fit_temperature`): the validation split, or out-of-fold predictions.
    A `recall_target`'s threshold is chosen on the same set, calibrated, and scored on test
    (``metrics["operating_point"]``). Ordered classes (`ImageSource.ordered`) add MAE and QWK.
    """
    labels = test.labels.numpy()
    logits = view_logits_with_progress(classifier, test.images.numpy())
    temperature = calibration.temperature()
    probabilities = tempered_probabilities(logits, temperature)
    calibration_summary = {
        "temperature": temperature,
        "ece_before": expected_calibration_error(tempered_probabilities(logits), labels),
        "ece_after": expected_calibration_error(probabilities, labels),
        "fitted_on": calibration.name,
    }
    metrics = compute_metrics(
        labels, probabilities, source.class_names, source.groupings, ordered=source.ordered
    )
    point = choose_operating_point(recall_target, calibration, temperature)
    if point is not None:
        metrics["operating_point"] = operating_point_metrics(labels, probabilities, point)
    names = tuple(view.__name__ for view in classifier.views)
    tta = tta_gain(classifier, test, logits, metrics["accuracy"])
    metrics["temperature_scaling"] = calibration_summary
    if tta is not None:
        metrics["tta"] = tta
    inference = classifier.inference.to_dict() if classifier.inference is not None else None
    return TestEvaluation(
        source,
        test.indices,
        probabilities,
        metrics,
        names,
        temperature,
        calibration_summary,
        tta,
        point,
        inference,
        classifier.translation,
    )


def view_logits_with_progress(classifier: Classifier, pixels: np.ndarray) -> np.ndarray:
    """`Classifier.view_logits` of the test images, under a progress bar (ELPV's 656 images x 8 views
    take more than a minute on a laptop CPU)."""
    # one job: a backend that pays off on the whole is chosen on the first chunk
    classifier.expect(len(pixels))
    views, classes = len(classifier.views), len(classifier.label_names)
    chunks = [np.empty((views, 0, classes), np.float32)]
    shown = f"test: {len(pixels)} images x {views} view" + ("" if views == 1 else "s")
    with progress_task(shown, len(pixels)) as advance:
        for start in range(0, len(pixels), _PROGRESS_CHUNK):
            chunk = pixels[start : start + _PROGRESS_CHUNK]
            chunks.append(classifier.view_logits(chunk))
            advance(len(chunk))
    return np.concatenate(chunks, axis=1)


def choose_operating_point(
    target: RecallTarget | None, calibration: CalibrationSet, temperature: float
) -> OperatingPoint | None:
    """The threshold reaching `target` on the calibration set's calibrated probabilities; None without a
    target, or (with a warning) when the set holds no image of the class."""
    if target is None:
        return None
    if not np.any(calibration.labels == target.class_index):
        logger.warning(
            "No image of %r in %s: no threshold for the recall target; predictions stay the most probable "
            "class.",
            target.class_name,
            calibration.name,
        )
        return None
    probabilities = tempered_probabilities(calibration.logits, temperature)
    point = operating_point(target, probabilities, calibration.labels, calibration.name)
    if point.expected_recall is not None and point.expected_recall < target.recall:
        logger.warning(
            "%s holds %d images of %r, too few to promise %.0f%% recall of it on new images: the threshold "
            "finds every one of them, and about %.0f%% of new ones. More labeled images of %r fix this.",
            calibration.name,
            point.held_out_positives,
            target.class_name,
            100 * target.recall,
            100 * point.expected_recall,
            target.class_name,
        )
    return point


def validation_set(classifier: Classifier, val: SplitImages) -> CalibrationSet:
    """The validation split's view logits, to fit the temperature on."""
    logits = classifier.view_logits(val.images.numpy()) if len(val.labels) else None
    return CalibrationSet.validation(logits, val.labels.numpy())


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
        plain = classifier.view_logits(test.images.numpy(), views=(identity,))[0]
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
    timings_s: dict[str, float] | None = None,
    data_checks: DataReport | None = None,
    cross_validation: CrossValidation | None = None,
    weight_choice: WeightChoice | None = None,
    pool_check: PoolCheck | None = None,
    model_choice: ModelChoice | None = None,
    auxiliary: dict[str, Any] | None = None,
    other_tasks: Sequence[OtherTask] = (),
) -> None:
    """metrics.json, predictions.csv, the model bundle, plots, both reports, data_checks.json if given,
    and with cross-validation its summary (metrics.json's ``cv``) and oof_predictions.csv; `auxiliary`,
    the other label's classifier (`api.auxiliary`), goes into metrics.json and the report, and its head
    (`other_tasks`) into the bundle; `pool_check`, whether the unlabeled pool helped, into metrics.json's
    ``pool``; `timings_s`, the seconds of each step of the run (`progress.Laps`), into metrics.json and
    the report."""
    document = metrics_document(
        evaluation,
        wall_time_s,
        timings_s=timings_s,
        cross_validation=cross_validation,
        weight_choice=weight_choice,
        pool_check=pool_check,
        model_choice=model_choice,
        auxiliary=auxiliary,
    )
    write_json(paths.metrics, document)
    if data_checks is not None:
        write_json(paths.data_checks, data_checks.to_dict())
    write_prediction_files(paths, evaluation, cross_validation)
    save_model(
        paths.model, config, evaluation, backbone, headline=document["headline"], other_tasks=other_tasks
    )
    source = evaluation.source
    plots = create_run_plots(
        paths.plots,
        evaluation.metrics,
        training.history,
        source.class_names,
        true_labels=[source.records[i].label for i in evaluation.indices],
        probabilities=evaluation.probabilities,
        open_image=lambda position: source.open(source.records[evaluation.indices[position]]),
        range_test=astuple(training.range_test) if training.range_test else None,
    )
    notes = [
        *source.notes,
        *([model_choice.warning] if model_choice and model_choice.warning else []),
        *([auxiliary_summary(auxiliary)] if auxiliary else []),
    ]
    context = ReportContext(
        title=f"{config.data.name} · {config.model.name} · {method_name(config.train.strategy)}",
        run_dir=paths.root,
        metrics=evaluation.metrics,
        data_summary=counts,
        strategy=method_name(config.train.strategy),
        phases=[asdict(p) for p in phases],
        config=config.to_dict(),
        plots=plots,
        notes=notes,
        wall_time_s=wall_time_s,
        timings_s=timings_s,
        data_checks=data_checks,
        cross_validation=document.get("cv"),
        weight_choice=document.get("weight_choice"),
        model_choice=document.get("model_choice"),
    )
    write_reports(context)


def metrics_document(
    evaluation: TestEvaluation,
    wall_time_s: float,
    *,
    timings_s: dict[str, float] | None = None,
    cross_validation: CrossValidation | None,
    weight_choice: WeightChoice | None,
    pool_check: PoolCheck | None,
    model_choice: ModelChoice | None,
    auxiliary: dict[str, Any] | None,
) -> dict[str, Any]:
    """metrics.json: the test metrics, their headline, and what the run decided on the way (only what it
    did: no key for a step it skipped)."""
    cv = None
    if cross_validation is not None:
        final = "ensemble" if cross_validation.members else "refit"
        cv = {**cross_validation.summary(evaluation.source, evaluation.temperature), "final": final}
    run_level = {
        "calibration": evaluation.calibration,
        "tta": evaluation.tta,
        "cv": cv,
        "weight_choice": weight_choice.to_dict() if weight_choice is not None else None,
        "pool": pool_check.to_dict() if pool_check is not None else None,
        "model_choice": model_choice.to_dict() if model_choice is not None else None,
        "inference": evaluation.inference,
        "auxiliary": auxiliary,
    }
    extras = {key: value for key, value in run_level.items() if value is not None}
    headline = headline_metrics(evaluation.metrics)
    timings = {"timings_s": timings_s} if timings_s else {}
    return {"test": evaluation.metrics, "headline": headline, **extras, "wall_time_s": wall_time_s, **timings}


def write_prediction_files(
    paths: RunPaths, evaluation: TestEvaluation, cross_validation: CrossValidation | None
) -> None:
    """predictions.csv (the test split, decided as the bundle decides), and with cross-validation
    oof_predictions.csv (each train image by the fold model that did not see it)."""
    source = evaluation.source
    point = evaluation.operating_point
    write_predictions(paths.predictions, source, evaluation.indices, evaluation.probabilities, point=point)
    if cross_validation is not None:
        oof = cross_validation.probabilities(evaluation.temperature)
        write_predictions(
            paths.oof_predictions, source, cross_validation.indices, oof, cross_validation.fold_of
        )


def save_model(
    folder: Path,
    config: FitConfig,
    evaluation: TestEvaluation,
    backbone: Backbone,
    *,
    headline: dict[str, Any],
    other_tasks: Sequence[OtherTask],
) -> None:
    """The model bundle: the network, with what predicting needs (labels, views, temperature, operating
    point, the checked ONNX graph) and what its model card shows (headline metrics and intervals)."""
    intervals = evaluation.metrics.get("intervals", {})
    info = BundleInfo(
        evaluation.source.class_names,
        headline,
        config.data.name,
        evaluation.views,
        evaluation.source.channels,
        temperature=evaluation.temperature,
        intervals={name: bounds for name, bounds in intervals.items() if name in headline},
        test_images=len(evaluation.indices),
        operating_point=evaluation.operating_point,
    )
    save_bundle(backbone, info, folder, onnx=evaluation.translation, other_tasks=other_tasks)


def auxiliary_summary(auxiliary: dict[str, Any]) -> str:
    """The report's line on the other label's classifier."""
    return (
        f"The run also predicts {auxiliary['label']}: {auxiliary['accuracy']:.2%} accuracy, "
        f"{auxiliary['balanced_accuracy']:.2%} balanced, on {auxiliary['test_images']} test images; "
        f"the run's model predicts both, and {auxiliary['bundle']} holds its network for this label alone."
    )


def write_predictions(
    path: Path,
    source: ImageSource,
    indices: Sequence[int],
    probabilities: np.ndarray,
    folds: Sequence[int] | np.ndarray | None = None,
    *,
    point: OperatingPoint | None = None,
) -> None:
    """One row per image with its true and predicted label (by the operating `point` when there is one,
    as the bundle predicts) and every probability (and its fold)."""
    names = source.class_names
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(
        ["path", *(["fold"] if folds is not None else []), "true", "predicted"] + [f"p_{n}" for n in names]
    )
    decisions = decide(probabilities, point) if len(probabilities) else np.empty(0, np.int64)
    for row, (index, row_probabilities) in enumerate(zip(indices, probabilities, strict=True)):
        record = source.records[index]
        fold = [int(folds[row])] if folds is not None else []
        predicted = names[int(decisions[row])]
        writer.writerow(
            [record.path, *fold, names[record.label], predicted, *(f"{p:.6f}" for p in row_probabilities)]
        )
    write_atomic(path, text.getvalue().encode())
