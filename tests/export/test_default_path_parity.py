"""The default path's bundle: `transferkit.load` and its ONNX export predict what the run measured.

test_predictor.py and test_onnx.py check this on a random-init network whose BatchNorm statistics adapt;
here the packaged Lite0 keeps its ImageNet weights and frozen statistics, and uses ELPV's test-time views.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.cli.main import main
from transferkit.training import fast_inference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    """The default model and data, made small: 64 ELPV cells at 64 px, the head and one fine-tune epoch."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:  # 64 px images: translate even these few
        patch.setattr(fast_inference, "MIN_ELEMENTS", 0)
        run = transferkit.fit(epochs=1, image_size=64, batch_size=8, seed=0, out=out, **{"data.subset": 64})
    assert (run.config.model.name, run.config.model.pretrained) == ("efficientnet_lite0", True)
    assert run.config.train.batchnorm == "frozen"
    return run


@pytest.fixture(scope="module")
def test_rows(run: transferkit.Run) -> list[dict[str, str]]:
    with open(run.dir / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _probabilities(rows: list[dict[str, str]], labels: list[str]) -> np.ndarray:
    return np.array([[float(row[f"p_{name}"]) for name in labels] for row in rows])


def test_load_predicts_the_runs_test_probabilities(
    run: transferkit.Run, test_rows: list[dict[str, str]]
) -> None:
    classifier = transferkit.load(run.dir)
    # ELPV's test-time views (the 8 symmetries of the square), repeated by the bundle
    assert [view.__name__ for view in classifier.views] == [
        *("identity", "hflip", "vflip", "rot180", "rot90", "rot270", "transpose", "transverse")
    ]
    expected = _probabilities(test_rows, classifier.label_names)
    probabilities = classifier.predict_proba([row["path"] for row in test_rows], batch_size=5)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # predictions.csv keeps 6 decimals


def test_the_run_predicted_with_onnxruntime_checked_against_pytorch(
    run: transferkit.Run, test_rows: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)
    # predictions.csv came from onnxruntime (the test above holds them to PyTorch's within 1e-5)
    choice = json.loads((run.dir / "metrics.json").read_text())["inference"]
    assert choice["backend"] == "onnx" and 0 <= choice["max_difference"] <= 1e-4
    paths = [row["path"] for row in test_rows]
    # the bundle keeps the graph that predicted them, and `auto` runs it without building the network
    from_bundle = transferkit.load(run.dir, backend="auto", device="cpu")
    assert from_bundle.backend == "onnx" and from_bundle.network is None
    expected = _probabilities(test_rows, from_bundle.label_names)
    np.testing.assert_allclose(from_bundle.predict_proba(paths), expected, atol=1e-5)
    # without it, the weights are translated in memory and checked again
    bundle = shutil.copytree(run.dir / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.onnx"))
    in_memory = transferkit.load(bundle, backend="auto", device="cpu")
    np.testing.assert_allclose(in_memory.predict_proba(paths), expected, atol=1e-4)
    assert in_memory.backend == "onnx" and in_memory.network is not None


def test_the_onnx_export_of_the_packaged_lite0_predicts_the_same(
    run: transferkit.Run, test_rows: list[dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # export fails unless onnxruntime is within 1e-4 of PyTorch on the run's test images
    assert main(["export", str(run.dir), "--format", "onnx"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"on {len(test_rows)} test images of {run.dir} (from predictions.csv)" in out
    on_onnx = transferkit.load(run.dir, backend="onnx")
    assert on_onnx.backend == "onnx"
    paths = [row["path"] for row in test_rows]
    expected = _probabilities(test_rows, on_onnx.label_names)
    np.testing.assert_allclose(on_onnx.predict_proba(paths, batch_size=3), expected, atol=1e-4)
    assert [p.label for p in on_onnx.predict(paths)] == [row["predicted"] for row in test_rows]
