"""An auxiliary head learns another label of the same images beside the task."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

import transferkit
from transferkit.cli.main import main
from transferkit.errors import ConfigError
from transferkit.export import export_model
from transferkit.testing import make_image_folder, tiny_fit_config


def _toned_manifest(root: Path, *, shuffled: bool = False) -> Path:
    """Three classes of images, every other one darkened; its tone is a second label, one a network sees
    (or, `shuffled`, the same labels in a random order: nothing to learn)."""
    folder = make_image_folder(root / "images", per_class=16)
    paths = sorted(folder.rglob("*.png"))
    tones = ["dark" if i % 2 else "light" for i in range(len(paths))]
    for path, tone in zip(paths, tones, strict=True):
        if tone == "dark":
            Image.fromarray((np.asarray(Image.open(path)) * 0.35).astype(np.uint8)).save(path)
    if shuffled:
        np.random.default_rng(1).shuffle(tones)
    manifest = root / "labels.csv"
    with manifest.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label", "tone"])
        writer.writerows([p.relative_to(root), p.parent.name, t] for p, t in zip(paths, tones, strict=True))
    return manifest


def _fit(manifest: Path, out: Path) -> transferkit.Run:
    config = tiny_fit_config(manifest, out, epochs=6).with_overrides(
        {"data.aux_label": "tone", "train.aux_weight": 1.0, "train.strategy": "full", "train.lr": 3e-3}
    )
    run = transferkit.fit(config)
    assert "learned tone (dark, light)" in (run.dir / "report.html").read_text()
    return run


def _aux_losses(run: transferkit.Run) -> list[float]:
    rows = list(csv.DictReader((run.dir / "metrics.csv").open()))
    return [float(row["aux_loss"]) for row in rows if row["aux_loss"]]


def test_the_auxiliary_head_learns_its_label_where_shuffled_labels_leave_nothing_to_learn(
    tmp_path: Path,
) -> None:
    chance = math.log(2)  # the zero-initialised head's loss on two classes
    learned = _aux_losses(_fit(_toned_manifest(tmp_path / "toned"), tmp_path / "runs"))
    shuffled = _aux_losses(_fit(_toned_manifest(tmp_path / "shuffled", shuffled=True), tmp_path / "runs"))
    assert len(learned) == 6
    assert min(learned) < 0.65 * chance  # measured: about 0.3 chance
    assert min(shuffled) > 0.8 * chance  # labels not aligned with their images: measured 0.9 chance


def test_the_run_s_model_predicts_both_labels_as_their_single_label_bundles_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _toned_manifest(tmp_path / "toned")
    run = _fit(manifest, tmp_path / "runs")
    other = json.loads((run.dir / "metrics.json").read_text())["auxiliary"]
    assert other["bundle"] == "tasks/tone" and other["classes"] == ["dark", "light"]
    assert other["accuracy"] >= 0.8  # brightness: measured 1.0 on the test images
    assert "The run also predicts tone" in (run.dir / "report.html").read_text()
    rows = list(csv.DictReader(manifest.open()))
    paths = [str(manifest.parent / row["path"]) for row in rows]

    both = transferkit.load(run.dir, backend="torch").predict_files(paths, top_k=2)
    tone = transferkit.load(run.dir / other["bundle"], backend="torch").predict_files(paths, top_k=2)
    task = transferkit.load(_task_alone(run.dir / "model", tmp_path / "task"), backend="torch")
    assert all(result.other_labels.keys() == {"tone"} for result in both)
    for joint, alone, plain in zip(both, tone, task.predict_files(paths, top_k=2), strict=True):
        assert joint.other_labels["tone"].labels == alone.prediction.labels
        assert np.allclose(
            joint.other_labels["tone"].probabilities, alone.prediction.probabilities, atol=1e-5
        )
        assert joint.prediction == plain.prediction and not plain.other_labels
    found = [r.other_labels["tone"].label == row["tone"] for r, row in zip(both, rows, strict=True)]
    assert np.mean(found) >= 0.8

    onnx = export_model(run.dir).files[-1]  # the task's network alone, as the bundle's README says
    assert onnxruntime.InferenceSession(onnx).get_outputs()[0].shape[1] == 3

    capsys.readouterr()  # the fit's progress
    assert main(["predict", str(run.dir), *paths[:3], "--format", "csv"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == "path,label,probability,tone,tone_probability,error"
    assert [line.split(",")[3] for line in lines] == [r.other_labels["tone"].label for r in both[:3]]


def test_an_ensemble_s_members_each_predict_the_other_label_and_it_averages_them(tmp_path: Path) -> None:
    manifest = _toned_manifest(tmp_path / "toned")
    config = tiny_fit_config(manifest, tmp_path / "runs", epochs=6).with_overrides(
        {
            "data.aux_label": "tone",
            "train.aux_weight": 1.0,
            "train.strategy": "full",
            "train.lr": 3e-3,
            "cv.folds": 2,
            "cv.final": "ensemble",
        }
    )
    run = transferkit.fit(config)
    bundle = json.loads((run.dir / "model" / "config.json").read_text())
    assert bundle["ensemble_members"] == 2 and bundle["other_tasks"][0]["name"] == "tone"
    rows = list(csv.DictReader(manifest.open()))
    paths = [str(manifest.parent / row["path"]) for row in rows]

    both = transferkit.load(run.dir, backend="torch")
    tone = transferkit.load(run.dir / "tasks" / "tone", backend="torch")  # the members with tone heads
    task = transferkit.load(_task_alone(run.dir / "model", tmp_path / "task"), backend="torch")
    results = both.predict_files(paths, top_k=2)
    for joint, alone, plain in zip(
        results, tone.predict_files(paths, top_k=2), task.predict_files(paths), strict=True
    ):
        assert joint.other_labels["tone"].labels == alone.prediction.labels
        assert np.allclose(
            joint.other_labels["tone"].probabilities, alone.prediction.probabilities, atol=1e-5
        )
        assert joint.prediction.label == plain.prediction.label
    found = [r.other_labels["tone"].label == row["tone"] for r, row in zip(results, rows, strict=True)]
    assert np.mean(found) >= 0.8  # brightness

    # at temperature 1 the ensemble's tone is the mean of its members' tone probabilities
    pixels = torch.from_numpy(both.preprocess(paths[:4]))
    network = both.network
    members = network.model.members  # type: ignore[union-attr]
    inputs = network.normalize(pixels)  # type: ignore[union-attr]
    with torch.no_grad():
        mean = torch.stack([member(inputs)[:, 3:].softmax(1) for member in members]).mean(0)
        assert torch.allclose(network(pixels)[:, 3:].softmax(1), mean, atol=1e-6)  # type: ignore[operator]


def _task_alone(bundle: Path, copy: Path) -> Path:
    """A copy of `bundle` without its other labels: the task's network as a bundle of one label."""
    shutil.copytree(bundle, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["other_tasks"], config["other_tasks_sha256"]
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "tasks.safetensors").unlink()
    return copy


def test_an_auxiliary_label_refuses_mixed_images(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "images", per_class=2, size=8)
    config = tiny_fit_config(folder, tmp_path / "runs").with_overrides(
        {"data.aux_label": "tone", "train.mixup": 0.2}
    )
    with pytest.raises(ConfigError, match="does not combine with"):
        transferkit.fit(config)
