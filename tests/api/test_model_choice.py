"""The start chooses itself: candidates scored on the train split, the best starts, a chained start is
compared with its ancestors, and every bundle records the line of models it descends from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.api.model_choice import Evidence, _negative_transfer, _rows, _weigh, candidate_specs
from transferkit.catalog import PACKAGED
from transferkit.errors import UnknownNameError
from transferkit.ranking import CandidateResult, Ranking, knn_accuracy
from transferkit.ranking.knn import knn_correct
from transferkit.testing import tiny_fit_config

PACKAGED_NAMES = [model.name for model in PACKAGED]


def test_knn_accuracy_separates_clustered_from_random_features() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    clustered = 4 * np.eye(4)[labels] + rng.normal(size=(100, 4))
    assert knn_accuracy(clustered, labels) > 0.9
    assert knn_accuracy(rng.normal(size=(100, 4)), labels) < 0.5
    assert knn_accuracy(3.0 * clustered, labels) == knn_accuracy(clustered, labels)  # cosine: scale-free


def test_knn_leaves_each_image_out() -> None:
    # Each image's only exact copy is in the other class: with itself counted, every image would be right.
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert knn_accuracy(features, np.array([0, 1, 0, 1]), k=1) == 0.0


def test_candidate_specs() -> None:
    assert candidate_specs("efficientnet_lite0") == ["efficientnet_lite0"]
    assert candidate_specs("efficientnet_lite1, efficientnet_lite0") == [
        "efficientnet_lite1",
        "efficientnet_lite0",
    ]
    assert candidate_specs("auto") == PACKAGED_NAMES
    with pytest.raises(UnknownNameError, match="efficientnet_lite0"):
        candidate_specs("efficientnet_lite0,efficientnet_lte1")


def _ranking(scores: dict[str, tuple[float, float]], right: dict[str, list[bool]] | None = None) -> Ranking:
    results = [
        CandidateResult(
            spec,
            spec,
            True,
            "arch",
            1,
            1.0,
            {"logme": logme, "knn": knn},
            None,
            0.0,
            False,
            tuple((right or {}).get(spec, ())),
        )
        for spec, (logme, knn) in scores.items()
    ]
    return Ranking("data", ["logme", "knn"], "logme", 10, 0, results, 0.0)


def test_knn_correct_is_the_per_image_vote_behind_the_accuracy() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    features = 2 * np.eye(3)[labels] + rng.normal(size=(60, 3))
    right = knn_correct(features, labels)
    assert right.dtype == bool and right.shape == (60,)
    assert right.mean() == knn_accuracy(features, labels)


def _right(count: int, wrong: list[int]) -> list[bool]:
    return [index not in wrong for index in range(count)]


def test_another_model_starts_only_on_clear_evidence_over_the_reference() -> None:
    scores = {"ref": (0.1, 0.90), "other": (0.2, 0.95)}  # other places first on both scores
    # 40 images: other gets two more right than ref, ref none that other misses: every difference
    # is 0 or +1, gain 0.05, standard error 0.035: clear.
    clear = _ranking(scores, {"ref": _right(40, [3, 7, 9, 20]), "other": _right(40, [3, 20])})
    rows = _rows(clear)
    choice = _weigh(clear, rows, "ref,other", reference="ref")
    assert choice.chosen == "other" and choice.evidence is not None and choice.evidence["clear"]
    # The same gain of two images, made of four won and two lost: the differences spread more, and
    # the standard error (0.062) exceeds the gain.
    mixed = _ranking(scores, {"ref": _right(40, [1, 2, 3, 4]), "other": _right(40, [10, 11])})
    evidence = Evidence.between(mixed.candidates[1], mixed.candidates[0])
    assert evidence.gain == pytest.approx(0.05)
    assert evidence.standard_error > 0.05 and not evidence.clear
    choice = _weigh(mixed, _rows(mixed), "ref,other", reference="ref")
    assert choice.chosen == "ref" and choice.evidence == evidence.to_dict()


def test_the_reference_placed_first_starts_without_weighing() -> None:
    ranking = _ranking({"ref": (0.3, 0.9), "other": (0.2, 0.8)}, {"ref": [True], "other": [False]})
    choice = _weigh(ranking, _rows(ranking), "auto", reference="ref")
    assert choice.chosen == "ref" and choice.evidence is None


def test_candidates_are_ordered_by_mean_place_with_knn_breaking_ties() -> None:
    rows = _rows(_ranking({"a": (1.0, 0.5), "b": (0.5, 0.9), "c": (0.1, 0.1)}))
    assert [row["spec"] for row in rows] == ["b", "a", "c"]  # a and b tie on mean place; b has the better kNN
    assert [row["place"] for row in rows] == [1, 2, 3]


def test_a_chained_start_below_its_ancestor_is_warned_about() -> None:
    rows = _rows(_ranking({"run:x": (0.1, 0.6), "efficientnet_lite0": (0.2, 0.8)}))
    warning = _negative_transfer(rows, "run:x")
    assert warning is not None and "efficientnet_lite0" in warning and "0.800 against 0.600" in warning
    assert (
        _negative_transfer(_rows(_ranking({"run:x": (0.3, 0.9), "efficientnet_lite0": (0.2, 0.8)})), "run:x")
        is None
    )


def _packaged_config(folder: Path, out: Path, model: str) -> transferkit.FitConfig:
    return tiny_fit_config(folder, out).with_overrides({"model.name": model, "model.pretrained": True})


@pytest.fixture(scope="module")
def packaged_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    return transferkit.fit(
        _packaged_config(image_folder, tmp_path_factory.mktemp("lite0"), "efficientnet_lite0")
    )


def test_several_models_the_best_scoring_starts(image_folder: Path, tmp_path: Path) -> None:
    run = transferkit.fit(_packaged_config(image_folder, tmp_path, "efficientnet_lite1,efficientnet_lite0"))
    choice = json.loads((run.dir / "model_choice.json").read_text())
    assert sorted(row["spec"] for row in choice["candidates"]) == ["efficientnet_lite0", "efficientnet_lite1"]
    evidence = choice["evidence"]  # lite1, named first, is the reference
    best = choice["candidates"][0]["spec"]
    assert choice["chosen"] == (best if evidence is None or evidence["clear"] else "efficientnet_lite1")
    assert all(0 < row["scores"]["knn"] <= 1 for row in choice["candidates"])
    assert run.config.model.name == choice["chosen"]
    assert json.loads(run.paths.metrics.read_text())["model_choice"] == choice
    assert "Start model" in run.paths.report_md.read_text()


def test_a_bundle_records_its_ancestry_and_a_chained_start_is_compared(
    packaged_run: transferkit.Run, tmp_path: Path, image_folder: Path
) -> None:
    first = json.loads((packaged_run.dir / "model" / "config.json").read_text())
    assert [entry["spec"] for entry in first["ancestry"]] == ["efficientnet_lite0"]
    chained = transferkit.fit(_packaged_config(image_folder, tmp_path, f"run:{packaged_run.dir}"))
    second = json.loads((chained.dir / "model" / "config.json").read_text())
    assert [entry["spec"] for entry in second["ancestry"]] == [
        f"run:{packaged_run.dir}",
        "efficientnet_lite0",
    ]
    choice = json.loads((chained.dir / "model_choice.json").read_text())
    assert choice["chosen"] == f"run:{packaged_run.dir}"  # a named start is kept, only compared
    assert {row["spec"] for row in choice["candidates"]} == {f"run:{packaged_run.dir}", "efficientnet_lite0"}
    if choice["warning"]:
        assert choice["warning"] in chained.paths.report_md.read_text()
