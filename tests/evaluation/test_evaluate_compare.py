"""`transferkit evaluate` reproduces a run's test scores; `transferkit compare` tells noise from gains."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import transferkit
from transferkit.api.evaluate import evaluate
from transferkit.cli.main import main
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.compare import compare_runs
from transferkit.testing import make_image_folder, tiny_fit_config


@pytest.fixture(scope="module")
def run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    return transferkit.fit(tiny_fit_config(image_folder, tmp_path_factory.mktemp("runs")))


def _predictions(run_dir: Path) -> dict[str, list[float]]:
    with open(run_dir / "predictions.csv", newline="") as handle:
        return {
            row["path"]: [float(v) for k, v in row.items() if k.startswith("p_")]
            for row in csv.DictReader(handle)
        }


def test_evaluate_rebuilds_the_runs_test_split_and_its_scores(run: transferkit.Run) -> None:
    result = evaluate(run.dir)
    expected = _predictions(run.dir)
    assert sorted(result.paths) == sorted(expected)
    got = dict(zip(result.paths, result.probabilities.tolist(), strict=True))
    for path, probabilities in expected.items():
        np.testing.assert_allclose(got[path], probabilities, atol=1e-5)
    assert result.metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert result.views == json.loads((run.dir / "model" / "config.json").read_text())["test_time_views"]


def test_evaluate_on_other_data_and_split(run: transferkit.Run, image_folder: Path) -> None:
    result = evaluate(run.dir / "model", data=str(image_folder), split="all", tta=False)
    assert len(result.paths) == 36
    assert result.views == ["identity"]


def test_evaluate_refuses_classes_the_model_does_not_know(run: transferkit.Run, tmp_path: Path) -> None:
    other = make_image_folder(tmp_path, classes=("cat", "owl"), per_class=4)
    with pytest.raises(DataError, match=r"classes \['owl'\] that the model does not know"):
        evaluate(run.dir, data=str(other), split="all")


def test_a_bare_bundle_needs_data(run: transferkit.Run) -> None:
    with pytest.raises(ConfigError, match="--data"):
        evaluate(run.dir / "model")


def test_evaluate_command_prints_and_writes(
    run: transferkit.Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(run.dir), "--out", str(tmp_path)]) == 0
    assert "accuracy" in capsys.readouterr().out
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["split"] == "test" and written["metrics"]["num_samples"] == len(_predictions(run.dir))


def _fake_run(root: Path, name: str, correct: list[bool]) -> Path:
    """A finished run's three files, with predictions right where `correct` says; its strategy as
    config.yaml records the default's, with its options."""
    run = root / name
    run.mkdir(parents=True)
    strategy = {"name": "fine-tune", "frozen_groups": 3}
    config = {"model": {"name": name}, "train": {"strategy": strategy}, "data": {"name": "cells"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    accuracy = float(np.mean(correct))
    headline = {"accuracy": accuracy, "balanced_accuracy": accuracy, "macro_f1": accuracy}
    (run / "metrics.json").write_text(json.dumps({"headline": headline, "wall_time_s": 60.0}))
    rows = ["path,true,predicted,p_a,p_b"]
    rows += [f"img{i}.png,a,{'a' if ok else 'b'},0.5,0.5" for i, ok in enumerate(correct)]
    (run / "predictions.csv").write_text("\n".join(rows) + "\n")
    return run


def test_compare_pairs_runs_on_their_shared_test_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.7).tolist()
    same = list(base)
    better = [ok or rng.random() < 0.5 for ok in base]  # fixes half the mistakes
    rows = compare_runs([_fake_run(tmp_path, "base", base), _fake_run(tmp_path, "same", same),
                         _fake_run(tmp_path, "better", better)])  # fmt: skip
    assert rows[0].difference is None
    assert rows[1].difference == (0.0, 0.0, 0.0) and rows[1].beyond_noise is False
    assert rows[2].difference is not None and rows[2].difference[1] > 0 and rows[2].beyond_noise
    assert rows[2].shared_images == 400


def test_compare_command_writes_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_fake_run(tmp_path, name, [i % 3 != k for i in range(90)]) for k, name in enumerate(["a", "b"])]
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "within noise" in out
    assert "every run: fine-tune, cells" in out  # what they share, once; the models differ
    assert re.search(r"^ *2 +b +", out, re.MULTILINE) and f"2: {runs[1]}" in out  # numbered, then named
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0
    written = (tmp_path / "out" / "comparison.csv").read_text()
    assert "difference_low" in written and ",fine-tune," in written  # the strategy by its name


def test_compare_needs_finished_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lacks config\.yaml"):
        compare_runs([tmp_path, tmp_path])


def test_other_data_ignores_the_runs_subset_and_budget(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"data.labels_per_class": 2})
    budget_run = transferkit.fit(config)
    assert len(evaluate(budget_run.dir, data=str(image_folder), split="all").paths) == 36


def test_compare_reports_a_damaged_run(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "a", [True, False])
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(ConfigError, match="Cannot read the run"):
        compare_runs([run, _fake_run(tmp_path, "b", [True, True])])
