"""`rank` and `transferkit rank` end to end, with tiny models on synthetic images."""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm import create_model
from timm.models import save_for_hf

import transferkit
from transferkit.cli import rank as rank_cli
from transferkit.config import DataConfig, ModelConfig
from transferkit.errors import ConfigError, DataError, UnknownNameError
from transferkit.ranking import Candidate, Ranking, rank, write_ranking
from transferkit.ranking.candidates import CandidateFeatures
from transferkit.ranking.ranking import score_candidate
from transferkit.testing import make_image_folder, tiny_fit_config

RANDOM_TINY = Candidate("timm:test_efficientnet", pretrained=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("shapes"), per_class=16)


@pytest.fixture(scope="module")
def data(folder: Path) -> DataConfig:
    return DataConfig(name=str(folder), val_fraction=0.3)


@pytest.fixture(scope="module")
def fine_tuned(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A run fine-tuned on this very task: its own head already predicts the target classes."""
    run = transferkit.fit(tiny_fit_config(folder, tmp_path_factory.mktemp("runs")))
    return f"run:{run.dir}"


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A timm model saved with save_for_hf: loads offline through the timm: source with its weights."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("timm-model")
    save_for_hf(create_model("test_efficientnet", num_classes=7), folder, safe_serialization=True)
    return f"timm:{folder}"


@pytest.fixture(scope="module")
def ranking(data: DataConfig, fine_tuned: str, timm_folder: str) -> Ranking:
    return rank(data, [RANDOM_TINY, fine_tuned, timm_folder], race=True, image_size=32)


def test_every_candidate_gets_every_score_and_the_order_follows_logme(ranking: Ranking) -> None:
    assert ranking.methods == ["hscore", "knn", "leep", "logme", "nce", "sfda"]
    assert ranking.primary == "logme"
    logme = [result.scores["logme"] for result in ranking.candidates]
    assert logme == sorted(logme, reverse=True)  # type: ignore[type-var]
    assert ranking.ranks("logme") == [1, 2, 3]
    for result in ranking.candidates:
        assert all(np.isfinite(value) for value in result.scores.values())  # type: ignore[arg-type]
        assert result.parameters > 0
        assert result.images_per_second > 0
    assert ranking.num_images + ranking.num_val_images == 36  # 48 images, a quarter held out for test


def test_a_model_fine_tuned_on_the_task_wins_leep(ranking: Ranking, fine_tuned: str) -> None:
    by_spec = {result.spec: result for result in ranking.candidates}
    run = by_spec[fine_tuned]  # its source head is the run's own three classes
    assert ranking.ranks("leep")[ranking.candidates.index(run)] == 1
    random_leep = by_spec[RANDOM_TINY.spec].scores["leep"]
    assert random_leep == pytest.approx(-np.log(3), abs=0.1)  # a random head knows nothing of the task
    assert run.race_accuracy is not None
    assert run.race_accuracy >= 0.6  # 3 classes: chance is a third


def test_a_second_ranking_reuses_the_features(ranking: Ranking, data: DataConfig, fine_tuned: str) -> None:
    again = rank(data, [fine_tuned, RANDOM_TINY], ["logme", "leep"], image_size=32)
    assert all(result.features_cached for result in again.candidates)
    before = {result.label: result.scores["logme"] for result in ranking.candidates}
    assert {result.label: result.scores["logme"] for result in again.candidates} == {
        label: before[label] for label in (fine_tuned, RANDOM_TINY.label)
    }


def test_random_init_candidates_are_seeded(data: DataConfig) -> None:
    first = rank(data, [ModelConfig("timm:test_efficientnet", pretrained=False)], "logme", image_size=32)
    second = rank(data, [RANDOM_TINY], "logme", image_size=32, cache=False)
    other_seed = rank(data, [RANDOM_TINY], "logme", image_size=32, seed=1, cache=False)
    assert first.candidates[0].scores == second.candidates[0].scores
    assert other_seed.candidates[0].scores != first.candidates[0].scores


def test_candidates_see_elongated_images_as_fit_would_crop_them(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "strips", per_class=8)
    for path in folder.rglob("*.png"):  # strips four times as wide as high: auto squashes them whole
        image = Image.open(path)
        image.resize((image.width * 2, image.height // 2)).save(path)
    settings = {"auto": {}, "whole": {"crop": "squash", "crop_pct": 1.0}, "weights": {"crop": "weights"}}
    scores = {
        name: rank(str(folder), [RANDOM_TINY], "logme", image_size=32, cache=False, **crop)
        .candidates[0]
        .scores["logme"]
        for name, crop in settings.items()
    }
    assert scores["auto"] == scores["whole"] != scores["weights"]


def test_scores_that_need_a_source_head_are_left_out_with_a_note() -> None:
    features = CandidateFeatures(
        RANDOM_TINY, "test_efficientnet", torch.randn(12, 5), torch.empty(0, 5), None, 10, 1.0, 0.0, True
    )
    labels = {"train": torch.arange(12) % 2, "val": torch.empty(0, dtype=torch.long)}
    result = score_candidate(features, labels, 2, ["logme", "leep", "nce"], race=False)
    assert result.scores["leep"] is None
    assert result.scores["nce"] is None
    assert result.scores["logme"] is not None


def test_the_ranking_is_written_as_json_csv_and_a_plot(ranking: Ranking, tmp_path: Path) -> None:
    json_path, csv_path, png_path = write_ranking(ranking, tmp_path)
    written = json.loads(json_path.read_text())
    assert [row["label"] for row in written["candidates"]] == [r.label for r in ranking.candidates]
    assert written["candidates"][0]["ranks"]["logme"] == 1
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["model"] for row in rows] == [r.label for r in ranking.candidates]
    assert float(rows[0]["logme"]) == pytest.approx(ranking.candidates[0].scores["logme"])
    assert Image.open(png_path).size[0] > 1000  # five panels side by side: four scores and the race


@pytest.mark.parametrize(
    ("methods", "models", "options", "error", "message"),
    [
        (["logmee"], [RANDOM_TINY], {}, UnknownNameError, "Did you mean 'logme'"),
        ("all", ["efficientnet_lite"], {}, UnknownNameError, "efficientnet_lite0"),
        ("all", [], {}, ConfigError, "No models to rank"),
        ("all", [RANDOM_TINY, ModelConfig("timm:test_efficientnet", False)], {}, ConfigError, "listed twice"),
        ("all", [RANDOM_TINY], {"image_size": 8}, ConfigError, "image_size must be at least 16"),
        ("all", [RANDOM_TINY], {"crop": "squish"}, ConfigError, "crop must be one of auto, weights"),
        ("all", [RANDOM_TINY], {"batch_size": 0}, ConfigError, "batch_size must be at least 1"),
    ],
)
def test_bad_inputs_fail_before_any_data_is_read(
    methods: list[str] | str, models: list, options: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        rank("no-such-dataset-is-read", models, methods, **options)


def test_a_race_needs_a_validation_split(folder: Path) -> None:
    with pytest.raises(DataError, match="val_fraction"):
        rank(DataConfig(name=str(folder), val_fraction=0.0), [RANDOM_TINY], race=True, image_size=32)


def test_one_class_cannot_be_ranked(tmp_path: Path) -> None:
    single = make_image_folder(tmp_path, classes=("cat",), per_class=8)
    with pytest.raises(DataError, match="at least two classes"):
        rank(str(single), [RANDOM_TINY], image_size=32)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="transferkit")
    rank_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return rank_cli.run_rank(parser.parse_args(argv))


def test_the_command_prints_json_and_writes_the_files(
    folder: Path, fine_tuned: str, timm_folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["rank", "--data", str(folder), "--models", f"{fine_tuned},{timm_folder}", "--image-size", "32"]
    assert _run_cli([*argv, "--method", "logme,nce", "--json", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["methods"] == ["logme", "nce"]
    assert {row["spec"] for row in printed["candidates"]} == {fine_tuned, timm_folder}
    (written,) = tmp_path.iterdir()
    assert sorted(path.name for path in written.iterdir()) == ["ranking.csv", "ranking.json", "ranking.png"]


def test_the_command_prints_a_table(
    folder: Path, timm_folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "rank",
        "--data",
        str(folder),
        "--models",
        timm_folder,
        "--image-size",
        "32",
        "--out",
        str(tmp_path),
    ]
    assert _run_cli([*argv, "--method", "hscore"]) == 0
    table = capsys.readouterr().out
    assert "hscore" in table
    assert "img/s" in table


def test_the_table_of_three_packaged_models_and_six_scores_fits_80_columns() -> None:
    from rich.console import Console

    from transferkit.ranking.ranking import CandidateResult

    methods = ["hscore", "knn", "leep", "logme", "nce", "sfda"]
    scores = dict(zip(methods, [1.976, 0.727, -0.836, -0.435, -12.377, 1.0], strict=True))
    candidates = [
        CandidateResult(
            f"efficientnet_lite{k}",
            f"efficientnet_lite{k}",
            True,
            "x",
            4_800_000,
            123.4,
            scores,
            None,
            1.0,
            False,
        )
        for k in range(3)
    ]
    console = Console(width=80, record=True)
    console.print(rank_cli.ranking_table(Ranking("elpv", methods, "logme", 72, 0, candidates, 9.0)))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    assert any(
        "efficientnet_lite2  4.8 M   123  1.976 0.727 -0.836 -0.435 -12.377 1.000" in line for line in lines
    )


class _Ranked(Exception):
    """Stops the command once it has said which models it ranks."""


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([], ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]),  # auto, the default
        (
            ["--models", "timm:resnet18", "--models", "efficientnet_lite1,timm:resnet18"],
            ["timm:resnet18", "efficientnet_lite1"],
        ),
    ],
)
def test_the_command_ranks_the_packaged_models_unless_told(
    folder: Path, monkeypatch: pytest.MonkeyPatch, models: list[str], expected: list[str]
) -> None:
    def ranked(data: object, specs: list[str], *args: object, **kwargs: object) -> None:
        raise _Ranked(specs)

    monkeypatch.setattr("transferkit.ranking.rank", ranked)
    with pytest.raises(_Ranked) as given:
        _run_cli(["rank", "--data", str(folder), *models])
    assert given.value.args[0] == expected
