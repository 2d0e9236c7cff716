"""Cross-validation inside fit: folds, out-of-fold predictions, calibration on them, automatic use."""

import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import transferkit
from transferkit.api.cross_validation import resolve_folds
from transferkit.api.recipe import Recipe
from transferkit.config import FitConfig
from transferkit.data.folds import make_folds
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.data.splits import Splits
from transferkit.errors import ConfigError, DataError, ModelError
from transferkit.evaluation.operating_point import RecallTarget
from transferkit.export import export_model
from transferkit.testing import tiny_fit_config
from transferkit.training.methods import create_methods
from transferkit.transforms import create_augmentation


def _source(labels: list[int], groups: list[str] | None = None) -> ImageSource:
    groups = groups or [""] * len(labels)
    records = [
        ImageRecord(f"img/{i}", label, group=group)
        for i, (label, group) in enumerate(zip(labels, groups, strict=True))
    ]
    return ImageSource("toy", ["a", "b"], records)


def test_folds_are_stratified_disjoint_and_cover_every_image() -> None:
    source = _source([0] * 30 + [1] * 15)
    folds = make_folds(source, list(range(45)), 5, seed=0)
    assert sorted(i for fold in folds for i in fold) == list(range(45))
    for fold in folds:
        assert Counter(source.records[i].label for i in fold) == {0: 6, 1: 3}


def test_a_group_never_sits_in_two_folds() -> None:
    labels = [i % 2 for i in range(40)]
    groups = [f"module-{i // 4}" for i in range(40)]  # ten modules of four cells
    source = _source(labels, groups)
    folds = make_folds(source, list(range(40)), 5, seed=0)
    fold_of_group: dict[str, set[int]] = {}
    for number, fold in enumerate(folds):
        for i in fold:
            fold_of_group.setdefault(groups[i], set()).add(number)
    assert all(len(numbers) == 1 for numbers in fold_of_group.values())
    assert all(fold for fold in folds)


def test_too_few_images_of_a_class_for_the_folds_is_refused_with_a_fix() -> None:
    with pytest.raises(DataError, match=r"smallest class has 2.*--folds 2"):
        make_folds(_source([0] * 10 + [1] * 2), list(range(12)), 5, seed=0)


def _recipe(**overrides: object) -> Recipe:
    config = FitConfig().with_overrides(dict(overrides))
    return Recipe(
        config, create_methods(config), _source([0] * 40 + [1] * 20), create_augmentation("none", 32)
    )


@pytest.mark.parametrize(
    ("folds", "val", "expected"),
    [
        ("auto", 4, 5),  # 4 validation images for 2 classes: cross-validate
        ("auto", 20, None),  # 10 per class: validation decides
        (None, 4, None),  # never
        (3, 20, 3),  # always, with the folds asked for
    ],
)
def test_auto_cross_validates_only_when_validation_is_small(
    folds: object, val: int, expected: int | None
) -> None:
    splits = Splits(train=list(range(60 - val)), val=list(range(60 - val, 60)), test=[])
    assert resolve_folds(_recipe(**{"cv.folds": folds}), splits) == expected


@pytest.mark.parametrize(
    ("class_index", "recall", "expected"),
    [
        (1, 0.95, None),  # 20 validation images of class 1: enough for 95 % (19 are)
        (1, 0.99, 5),  # 99 would be
        (0, 0.9, 5),  # no validation image of class 0
    ],
)
def test_auto_cross_validates_when_validation_is_too_small_for_a_recall_target(
    class_index: int, recall: float, expected: int | None
) -> None:
    splits = Splits(train=list(range(40)), val=list(range(40, 60)), test=[])  # val: 20 images of class 1
    target = RecallTarget("ab"[class_index], class_index, recall)
    assert resolve_folds(_recipe(**{"cv.folds": "auto"}), splits, target) == expected


def test_on_several_devices_auto_leaves_the_choices_to_validation_and_asked_folds_are_refused() -> None:
    splits = Splits(train=list(range(56)), val=list(range(56, 60)), test=[])
    assert resolve_folds(_recipe(**{"cv.folds": "auto", "runtime.devices": 2}), splits) is None
    with pytest.raises(ConfigError, match="runs on one device"):
        resolve_folds(_recipe(**{"cv.folds": 3, "runtime.devices": 2}), splits)


def test_a_cross_validated_fit_reports_folds_and_calibrates_out_of_fold(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"cv.folds": 3})
    run = transferkit.fit(config)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    cv = metrics["cv"]
    assert [row["fold"] for row in cv["folds"]] == [0, 1, 2]
    assert set(cv["mean"]) == set(cv["sd"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    with open(run.dir / "oof_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(run.dir / "predictions.csv", newline="") as handle:
        test_paths = {row["path"] for row in csv.DictReader(handle)}
    # every train and validation image predicted once, by the one model that did not train on it
    images = len(list(image_folder.rglob("*.png")))
    assert len(rows) == len({row["path"] for row in rows}) == cv["out_of_fold"]["num_samples"] == images - 9
    assert not test_paths & {row["path"] for row in rows}
    assert Counter(row["fold"] for row in rows) == {"0": 9, "1": 9, "2": 9}
    accuracy = sum(row["true"] == row["predicted"] for row in rows) / len(rows)
    assert cv["out_of_fold"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["calibration"]["fitted_on"] == "out-of-fold predictions (3 folds, 27 images)"
    assert [p.name for p in sorted((run.dir / "folds").iterdir())] == ["fold-0", "fold-1", "fold-2"]
    # a finished fold keeps the weights a resume needs, not its Lightning checkpoints
    fold = run.dir / "folds" / "fold-0" / "checkpoints"
    assert (fold / "trained.pt").is_file() and not list(fold.glob("*.ckpt"))
    report = (run.dir / "report.md").read_text()
    assert "Cross-validation (train split)" in report and "Validation is folded into train" in report
    # the final model trained on every train image, with no validation left; each fold validated on its own
    assert not any(row["val_accuracy"] for row in _history(run.dir))
    assert all(_history(run.dir / "folds" / f"fold-{k}")[-1]["val_accuracy"] for k in range(3))


def test_where_the_folds_keep_the_head_the_final_model_skips_fine_tuning(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from transferkit.api import recipe

    chosen = recipe.choose_alpha
    monkeypatch.setattr(recipe, "choose_alpha", lambda *a, **k: replace(chosen(*a, **k), alpha=0.0))
    caplog.set_level(logging.INFO, logger="transferkit")
    run = transferkit.fit(tiny_fit_config(image_folder, tmp_path, epochs=2).with_overrides({"cv.folds": 3}))
    assert [row["phase"] for row in _history(run.dir)] == ["head"]  # no fine-tuning epoch
    said = "Out of fold the head on frozen features predicted best: the final model is that head."
    assert caplog.messages.count(said) == 1
    assert all(len(_history(run.dir / "folds" / f"fold-{k}")) == 3 for k in range(3))  # the folds did
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["weight_choice"]["alpha"] == 0
    assert "its fine-tuning, which that choice discards, was skipped" in (run.dir / "report.md").read_text()


def test_between_the_folds_and_the_final_model_the_choice_is_said(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from transferkit.api import recipe

    chosen = recipe.choose_alpha
    monkeypatch.setattr(recipe, "choose_alpha", lambda *a, **k: replace(chosen(*a, **k), alpha=1.0))
    caplog.set_level(logging.INFO, logger="transferkit")
    transferkit.fit(tiny_fit_config(image_folder, tmp_path, epochs=1).with_overrides({"cv.folds": 2}))
    said = r"Out of fold, WiSE-FT α 1 predicted best \(\d+\.\d % accuracy\): the final model trains on all 27"
    assert any(re.match(said, message) for message in caplog.messages), caplog.messages


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _fit_process(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TRANSFERKIT_KILL_AT": kill_at} if kill_at else {})}
    command = [sys.executable, "-m", "transferkit", "fit", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)


def test_a_cross_validated_run_killed_between_folds_resumes_to_the_same_model(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"cv.folds": 3, "runtime.deterministic": True, "data.cache": False}
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config.to_yaml())
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    assert _fit_process("--config", str(config_file), "--out", str(plain)).returncode == 0
    stopped = _fit_process("--config", str(config_file), "--out", str(killed), kill_at="fold:2")
    assert stopped.returncode == -signal.SIGKILL
    (run_dir,) = killed.iterdir()
    assert not (run_dir / "folds" / "fold-2").exists()  # killed before the third fold began
    resumed = _fit_process("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    (plain_dir,) = plain.iterdir()
    expected = load_file(plain_dir / "model" / "model.safetensors")
    weights = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.equal(weights[name], expected[name]) for name in expected)
    plain_cv = json.loads((plain_dir / "metrics.json").read_text())["cv"]
    assert json.loads((run_dir / "metrics.json").read_text())["cv"]["out_of_fold"] == plain_cv["out_of_fold"]


def test_the_ensemble_of_the_fold_models_is_one_bundle_that_load_and_onnx_predict_with(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="transferkit")
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"cv.folds": 3, "cv.final": "ensemble"})
    run = transferkit.fit(config)
    assert "The final model is the ensemble of the 3 fold models." in caplog.messages
    bundle = json.loads((run.dir / "model" / "config.json").read_text())
    assert bundle["ensemble_members"] == 3
    with open(run.dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    saved = np.array([[float(row[f"p_{name}"]) for name in ("cat", "dog", "fox")] for row in rows])
    classifier = transferkit.load(run.dir)
    assert np.allclose(classifier.predict_proba([row["path"] for row in rows]), saved, atol=1e-5)
    # the mean of the members' probabilities: each member alone differs from it
    members = classifier.network.model.members  # type: ignore[union-attr]
    pixels = torch.from_numpy(classifier.preprocess([rows[0]["path"]]))
    alone = [member(classifier.network.normalize(pixels)).softmax(1) for member in members]  # type: ignore[union-attr]
    expected = torch.stack(alone).mean(0)
    assert torch.allclose(classifier.network(pixels).softmax(1), expected, atol=1e-6)  # type: ignore[misc]
    report = export_model(run.dir)
    assert report.parity is not None and report.parity.max_abs_difference < 1e-4  # one ONNX graph
    assert "ensemble of the 3 fold models" in (run.dir / "report.md").read_text()
    with pytest.raises(ModelError, match="not the start of another transfer"):
        transferkit.fit(
            tiny_fit_config(image_folder, tmp_path).with_overrides({"model.name": f"run:{run.dir}"})
        )


def test_each_fold_finds_its_own_rate_with_lr_auto(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"cv.folds": 2, "train.lr": "auto"})
    run = transferkit.fit(config)
    runs = [run.dir / "folds" / "fold-0", run.dir / "folds" / "fold-1", run.dir]
    assert all((folder / "lr_range_test.json").is_file() for folder in runs)  # none reuses another's rate
    assert yaml.safe_load((run.dir / "config.yaml").read_text())["train"]["lr"] == "auto"
