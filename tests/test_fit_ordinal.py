"""`fit --task ordinal --recall-target`: ordinal metrics, the operating point, and a bundle that predicts
what the run measured, with PyTorch and with ONNX."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.evaluation.operating_point import decide
from transferkit.export import export_model
from transferkit.testing import make_image_folder, tiny_fit_config

CLASSES = ("0-none", "1-some", "2-severe")  # folder names sort in their order


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    folder = make_image_folder(tmp_path_factory.mktemp("levels"), classes=CLASSES)
    config = tiny_fit_config(folder, tmp_path_factory.mktemp("runs")).with_overrides(
        {"train.task": "ordinal", "decision.recall_target": "2-severe:0.9"}
    )
    return transferkit.fit(config)


def _predictions(run: transferkit.Run) -> list[dict[str, str]]:
    with open(run.dir / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_metrics_json_and_the_report_have_the_ordinal_metrics_and_the_operating_point(
    run: transferkit.Run,
) -> None:
    saved = json.loads((run.dir / "metrics.json").read_text())
    test = saved["test"]
    for name in ("mae", "qwk"):
        assert name in saved["headline"] and len(test["intervals"][name]) == 2
    point = test["operating_point"]
    assert point["point"]["class_name"] == "2-severe" and point["point"]["chosen_on"].startswith("val")
    assert point["point"]["held_out_recall"] >= 0.9
    assert set(point["intervals"]) == {"recall", "precision", "accuracy"}
    report = (run.dir / "report.md").read_text()
    assert "quadratic weighted kappa" in report and "## Operating point: 2-severe" in report


def test_the_bundle_records_the_task_and_the_threshold(run: transferkit.Run) -> None:
    config = json.loads((run.dir / "model" / "config.json").read_text())
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert config["task"] == "ordinal"
    assert config["operating_point"] == metrics["test"]["operating_point"]["point"]
    assert "pretrained_cfg" not in config  # timm alone cannot rebuild the cumulative-link head
    assert "2-severe" in (run.dir / "model" / "README.md").read_text()


def test_load_predicts_the_runs_test_probabilities_and_applies_the_threshold(run: transferkit.Run) -> None:
    rows = _predictions(run)
    classifier = transferkit.load(run.dir)
    assert classifier.ordinal and classifier.operating_point is not None
    paths = [row["path"] for row in rows]
    probabilities = classifier.predict_proba(paths)
    expected = np.array([[float(row[f"p_{name}"]) for name in CLASSES] for row in rows])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    predicted = [prediction.label for prediction in classifier.predict(paths)]
    assert predicted == [row["predicted"] for row in rows]
    by_rule = decide(probabilities, classifier.operating_point)
    assert predicted == [CLASSES[i] for i in by_rule]


def test_the_onnx_export_predicts_the_same(run: transferkit.Run) -> None:
    report = export_model(run.dir / "model")
    assert report.parity is not None and report.parity.max_abs_difference < 1e-4
    onnx = transferkit.load(run.dir, backend="onnx")
    assert onnx.ordinal and onnx.operating_point == transferkit.load(run.dir).operating_point
    paths = [row["path"] for row in _predictions(run)]
    np.testing.assert_allclose(
        onnx.predict_proba(paths), transferkit.load(run.dir).predict_proba(paths), atol=1e-4
    )


def test_with_cross_validation_the_threshold_is_chosen_out_of_fold(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "levels", classes=CLASSES, per_class=8)
    config = tiny_fit_config(folder, tmp_path / "runs", epochs=0).with_overrides(
        {
            "train.task": "ordinal",
            "cv.folds": 2,
            "data.val_fraction": 0.0,
            "decision.recall_target": "1-some:1",
        }
    )
    run = transferkit.fit(config)
    point = run.metrics["operating_point"]["point"]
    assert point["chosen_on"].startswith("out-of-fold") and point["held_out_recall"] == 1.0
    # no finite count of held-out images promises 100 %: n of them promise n / (n + 1), and the report says so
    count = point["held_out_positives"]
    assert point["expected_recall"] == pytest.approx(count / (count + 1))
    assert f"With only {count} of them there, too few for 100%" in (run.dir / "report.md").read_text()
