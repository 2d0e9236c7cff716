"""Semi-supervised learning: self-training on frozen features, FixMatch, and the pool's boundaries."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import transferkit
from transferkit.api.fit import check_unlabeled_pool
from transferkit.config import DataConfig
from transferkit.data.cache import SplitImages
from transferkit.data.checks import check_data
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.splits import UNLABELED
from transferkit.errors import ConfigError
from transferkit.testing import tiny_fit_config
from transferkit.training.interpolation import ALPHAS
from transferkit.training.method_options import FlexMatchOptions, PseudoLabelOptions, SelfTrainingOptions
from transferkit.training.semi import FixMatch, FlexMatch, PoolCheck, Teacher, pseudo_label
from transferkit.training.semi.consistency import Consistency, consistency_loss
from transferkit.training.semi.pseudo_label import PoolGate, pool_gate, select, self_train
from transferkit.training.semi.self_training import SelfTraining, teacher_labels


def _blobs(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(count) % 2
    centres = torch.stack([(labels * 4 - 2).float(), torch.zeros(count)], 1)
    return torch.randn(count, 2, generator=generator) * 0.8 + centres, labels


def test_self_training_beats_labeled_only_when_the_pool_carries_the_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    # two labeled points per class, both off-centre: the labeled-only boundary sits too far right
    train = torch.tensor([[-0.5, 0.0], [-0.6, 0.5], [3.5, 0.0], [3.6, -0.5]]), torch.tensor([0, 0, 1, 1])
    val, pool = _blobs(200, generator), _blobs(400, generator)
    result = self_train(train, val, pool, num_classes=2, rounds=3, threshold=0.8)
    labeled_only, last = result.rounds[0], result.rounds[-1]
    assert labeled_only["pseudo_labels"] == 0
    assert last["val_accuracy"] > labeled_only["val_accuracy"] + 0.03
    assert last["pseudo_label_accuracy"] > 0.95
    assert len(result.positions) > last["pseudo_labels"]  # the curriculum keeps growing


def _two_classes(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """20-dimensional features, the classes apart along the first axis only: few labels overfit."""
    labels = torch.arange(count) % 2
    features = torch.randn(count, 20, generator=generator)
    features[:, 0] += 1.5 * (2 * labels - 1)
    return features, labels


def test_the_gate_measures_whether_a_pool_helps_on_labeled_images_it_holds_out() -> None:
    helped = hurt = 0.0
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        labeled, pool = _two_classes(20, generator), _two_classes(600, generator)[0]
        # a pool off along an axis the labeled images never vary on: its pseudo-labels follow noise
        astray = torch.zeros(200, 20)
        astray[:, 19] = 10 * torch.randn(200, generator=generator).sign()
        for images, total in ((pool, "helped"), (astray, "hurt")):
            gate = pool_gate(labeled, images, num_classes=2, rounds=3, threshold=0.8)
            assert gate is not None and gate.folds == 5 and gate.images == 20
            if total == "helped":
                helped += gate.with_pool - gate.without
            else:
                hurt += gate.with_pool - gate.without
    assert helped > 0.1 and hurt < -0.1  # summed over 4 draws, out-of-fold accuracy


def test_the_gate_opens_only_on_an_out_of_fold_gain_and_needs_two_images_per_class() -> None:
    assert PoolGate(0.8, 0.81, 0.02, 5, 100).open
    assert not PoolGate(0.8, 0.8, 0.0, 5, 100).open
    assert not PoolGate(0.8, 0.79, 0.02, 5, 100).open
    features, labels = torch.randn(5, 3), torch.tensor([0, 0, 0, 0, 1])
    assert pool_gate((features, labels), torch.randn(9, 3), num_classes=2, rounds=1, threshold=0.5) is None


def test_the_gate_is_measured_once_for_the_same_labeled_images_in_any_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cross-validation folds deal the same labeled images into train and validation differently: one
    gate serves them all, as measured on the images in record order."""
    generator = torch.Generator().manual_seed(0)
    (features, labels), pool = _two_classes(20, generator), _two_classes(100, generator)[0]
    calls: list[int] = []
    measure = pseudo_label.pool_gate
    monkeypatch.setattr(pseudo_label, "pool_gate", lambda *a, **k: calls.append(1) or measure(*a, **k))
    monkeypatch.setattr(pseudo_label, "_measured_gates", {})
    options = PseudoLabelOptions()
    found = pseudo_label.PseudoLabels([0], [1])
    gates = []
    for held in ([0, 1, 2, 3], [16, 17, 18, 19]):
        kept = [row for row in range(20) if row not in held]
        data = {
            "train": SplitImages(torch.zeros(16, 1), labels[kept], kept),
            "val": SplitImages(torch.zeros(4, 1), labels[held], held),
        }
        split_features = {"train": features[kept], "val": features[held], UNLABELED: pool}
        gates.append(pseudo_label.gated(found, split_features, data, 2, options).gate)
    assert len(calls) == 1 and gates[0] == gates[1]
    in_record_order = measure((features, labels), pool, num_classes=2, rounds=options.rounds, threshold=0.8)
    assert in_record_order is not None and gates[0] == in_record_order.to_dict()


def test_selection_is_confident_and_within_each_class_quota() -> None:
    probabilities = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    positions, labels = select(probabilities, quotas=[1, 5], threshold=0.8)
    assert positions == [0, 3] and labels == [0, 1]  # class 0 capped at 1; 0.6 and 0.7 too unsure


def test_fixmatch_trains_only_on_confident_targets() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    pool = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    truth = torch.full((20,), -1)

    def loss(threshold: float):
        torch.manual_seed(0)
        return consistency_loss(
            model,
            lambda x: x.float() / 255,
            pool,
            truth,
            count=6,
            weak=None,
            strong=lambda x: x,
            thresholds=torch.full((3,), threshold),
        )

    everything, nothing = loss(0.0), loss(0.999)
    assert everything.used == 6 and everything.loss > 0 and everything.known == 0
    assert nothing.used == 0 and float(nothing.loss.detach()) == 0.0


@pytest.fixture
def pool_with_copies(image_folder: Path, tmp_path: Path) -> Path:
    """An unlabeled folder holding a copy of every labeled image (val and test ones included)."""
    copies = tmp_path / "unlabeled"
    copies.mkdir()
    for path in image_folder.rglob("*.png"):
        shutil.copy(path, copies / path.name)
    return copies


def test_the_pool_never_holds_copies_of_validation_or_test_images(
    image_folder: Path, pool_with_copies: Path
) -> None:
    config = DataConfig(name=str(image_folder), unlabeled=str(pool_with_copies), val_fraction=0.2)
    source = load_source(config)
    splits = split_with_budget(source, config)
    pool = check_unlabeled_pool(check_data(source, splits), splits, FixMatch()).unlabeled
    held_out = {Path(source.records[i].path).name for i in splits.val + splits.test}
    in_pool = {Path(source.records[i].path).name for i in pool}
    assert in_pool and not in_pool & held_out
    assert len(in_pool) == len(splits.train)  # the copies of train images stay


def test_semi_without_an_unlabeled_pool_is_refused(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"train.semi": "fixmatch"})
    with pytest.raises(ConfigError, match="--labels-per-class"):
        transferkit.fit(config)


def test_flexmatch_lowers_the_threshold_of_classes_it_has_learned_least() -> None:
    method = FlexMatch(FlexMatchOptions(threshold=0.9))
    method.attach(
        SplitImages(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.full((10,), -1), []), None, 3
    )
    assert method.thresholds().tolist() == [0.0, 0.0, 0.0]  # warm-up: nothing learned yet
    drawn = torch.arange(10)
    predicted = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    confidence = torch.tensor([0.95] * 8 + [0.5, 0.5])  # class 2's two are not confident
    method.learn(Consistency(torch.tensor(0.0), 0, 0, 0, drawn, confidence, predicted))
    assert method.learned.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, -1, -1]
    # class 0 leads with 6 (more than the 2 still unlearned): beta = 1, 1/3, 0; M(x) = x / (2 - x)
    assert torch.allclose(method.thresholds(), torch.tensor([0.9, 0.9 * (1 / 3) / (5 / 3), 0.0]))
    restored = FlexMatch(FlexMatchOptions(threshold=0.9))
    restored.load_state_dict(method.state_dict())
    restored.attach(method.pool, None, 3)
    assert torch.equal(restored.thresholds(), method.thresholds())  # a resume keeps what was learned


def _split(labels: list[int]) -> SplitImages:
    """Blank images with these labels, as a decoded split."""
    return SplitImages(
        torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), torch.tensor(labels), [*range(len(labels))]
    )


def test_a_teacher_labels_its_confident_pool_images_within_each_class_share() -> None:
    # labeled 3:1, so of a pool of 4 class 0 may take 3 images and class 1 one
    data = {"train": _split([0, 0, 0, 1]), "val": _split([0, 1]), UNLABELED: _split([0, 1, 1, -1])}
    pool = torch.tensor([[0.95, 0.05], [0.02, 0.98], [0.04, 0.96], [0.5, 0.5]])
    teacher = Teacher(pool, val=torch.tensor([[0.9, 0.1], [0.6, 0.4]]))
    labels = teacher_labels(teacher, data, threshold=0.9)
    assert labels.positions == [0, 1] and labels.labels == [0, 1]  # class 1's second is over its share
    assert labels.accuracy == 1.0 and labels.teacher_val_accuracy == 0.5
    assert teacher_labels(teacher, data, threshold=0.99).positions == []


def test_fold_teachers_label_the_pool_together_and_a_resume_reads_their_work_back(tmp_path: Path) -> None:
    data = {"train": _split([0, 1]), "val": _split([]), UNLABELED: _split([0, 1, 1])}
    # each fold teacher is sure of one pool image the other doubts; together, only the third is sure
    first, second = (
        np.array([[0.99, 0.01], [0.3, 0.7], [0.0, 1.0]]),
        np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]]),
    )
    teachers = Teacher.averaged([first, second])
    method = SelfTraining(SelfTrainingOptions(threshold=0.9))
    _, labels = method.pseudo_label(
        nn.Identity(), nn.Identity(), data, tmp_path, save=True, teacher=lambda: teachers
    )
    assert labels.positions == [2] and labels.labels == [1] and labels.teachers == 2
    assert "the 2 cross-validation folds' teachers, averaged, gave 1 pool images" in str(
        method.note([], labels)
    )
    _, read = method.pseudo_label(nn.Identity(), nn.Identity(), data, tmp_path, save=False)
    assert read.positions == [2] and read.teachers == 2
    assert np.array_equal(method.teacher_pool(read), (first + second) / 2)


@pytest.mark.parametrize("semi", ["pseudo-label", "fixmatch", "flexmatch", "self-training"])
def test_a_semi_supervised_fit_reports_its_pseudo_labels(
    semi: str, image_folder: Path, tmp_path: Path
) -> None:
    # a student that does no better than its teacher on validation would leave the pool out: kept here
    kept = {"train.semi.gate": False} if semi == "self-training" else {}
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"train.semi": semi, "data.labels_per_class": 5, "train.semi.threshold": 0.34, **kept}
    )
    run = transferkit.fit(config)
    report = (run.dir / "report.md").read_text()
    title = {
        "pseudo-label": "Pseudo-label self-training",
        "fixmatch": "FixMatch",
        "flexmatch": "FlexMatch",
        "self-training": "Self-training: a teacher trained on the labeled images alone",
    }
    assert title[semi] in report
    if semi == "self-training":
        assert (run.dir / "teacher" / "checkpoints" / "trained.pt").is_file()
        assert (run.dir / "pseudo_labels.json").is_file()
    elif semi == "pseudo-label":
        assert (run.dir / "pseudo_labels.json").is_file()
        assert "Gate: out-of-fold accuracy" in report  # used or not, the report says why
    else:  # pool images drew targets, and the hidden labels measured them
        assert "targets (" in report and "% right)" in report


def test_the_pool_stays_out_of_a_gated_run_unless_its_students_beat_their_teachers() -> None:
    helped = PoolCheck(without=0.875, with_pool=0.9, images=8, on="out of fold", gated=True)
    assert helped.used and helped.note().startswith("Out of fold, the recipe on the labeled images alone")
    assert "87.5% of the 8 held-out" in helped.note() and helped.note().endswith("90.0%: the pool helped.")
    even = PoolCheck(without=0.875, with_pool=0.875, images=8, on="on validation", gated=True)
    assert not even.used and "the final model is the teacher's recipe" in even.note()
    ungated = PoolCheck(without=0.9, with_pool=0.8, images=8, on="out of fold", gated=False)
    assert ungated.used and "the final model uses it all the same" in ungated.note()


def test_a_cross_validated_self_training_fit_sets_its_students_against_its_teachers(
    image_folder: Path, tmp_path: Path
) -> None:
    """Out of fold, the students against their teachers; the final model, which keeps its pool here,
    takes its pseudo-labels from the fold teachers' averaged predictions and trains no teacher itself."""
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {
            "train.semi": "self-training",
            "data.labels_per_class": 6,
            "cv.folds": 2,
            "train.semi.threshold": 0.34,
            "train.semi.gate": False,
        }
    )
    run = transferkit.fit(config)
    folds = [run.dir / "folds" / f"fold-{n}" for n in range(2)]
    held_out = [r["fold"] for r in csv.DictReader((run.dir / "oof_predictions.csv").open())]
    for number, fold in enumerate(folds):  # every WiSE-FT candidate's views of the fold's own images
        logits = np.load(fold / "teacher_logits.npy")
        assert logits.shape[0] == len(ALPHAS) and logits.shape[2] == held_out.count(str(number))
    pool = json.loads(run.paths.metrics.read_text())["pool"]
    assert pool["images"] == len(held_out) and pool["helped"] == (pool["with_pool"] > pool["without"])
    report = (run.dir / "report.md").read_text()
    expected = (
        f"Out of fold, the recipe on the labeled images alone (the teacher) classified {pool['without']:.1%} "
        f"of the {len(held_out)} held-out labeled images right, and with the pool (the student) "
        f"{pool['with_pool']:.1%}"
    )
    assert expected in report
    assert pool["used"] and not (run.dir / "teacher").exists()
    averaged = np.mean([np.load(fold / "teacher_pool.npy") for fold in folds], axis=0)
    chosen = json.loads((run.dir / "pseudo_labels.json").read_text())
    assert chosen["teachers"] == 2 and chosen["positions"]
    assert chosen["labels"] == averaged[chosen["positions"]].argmax(1).tolist()
    assert averaged[chosen["positions"]].max(1).min() >= 0.34
    assert "Self-training: the 2 cross-validation folds' teachers, averaged, gave" in report


def test_a_gated_self_training_fit_whose_pool_did_not_help_ends_as_the_fit_without_one(
    image_folder: Path, tmp_path: Path
) -> None:
    """With no pool image confident enough, each student is its teacher: the pool did not help, and the
    gated run ends with the weights and out-of-fold predictions of the run without --semi."""
    budget = {"data.labels_per_class": 6, "cv.folds": 2}
    alone = transferkit.fit(tiny_fit_config(image_folder, tmp_path / "alone").with_overrides(budget))
    semi = {**budget, "train.semi": "self-training", "train.semi.threshold": 0.9999}
    gated = transferkit.fit(tiny_fit_config(image_folder, tmp_path / "gated").with_overrides(semi))
    pool = json.loads(gated.paths.metrics.read_text())["pool"]
    assert not pool["helped"] and not pool["used"]
    assert (
        "the pool did not help, so the final model is the teacher's recipe"
        in (gated.dir / "report.md").read_text()
    )
    assert not (gated.dir / "pseudo_labels.json").exists()  # the final model never trained a teacher
    oof = [(run.dir / "oof_predictions.csv").read_text() for run in (alone, gated)]
    assert oof[0] == oof[1]
    expected, weights = (load_file(run.dir / "model" / "model.safetensors") for run in (alone, gated))
    assert all(torch.equal(weights[name], expected[name]) for name in expected)
    kept = transferkit.fit(
        tiny_fit_config(image_folder, tmp_path / "kept").with_overrides({**semi, "train.semi.gate": False})
    )
    assert json.loads(kept.paths.metrics.read_text())["pool"]["used"]
    assert (kept.dir / "pseudo_labels.json").is_file()  # the fold teachers' pseudo-labels


def test_a_teacher_leaves_the_student_as_it_would_train_without_one(
    image_folder: Path, tmp_path: Path
) -> None:
    """The teacher trains on its own random draws: with no pool image confident enough, the student is
    exactly the model trained on the labeled images without any semi-supervised method. On validation
    it then does no better than its teacher, so the gated run ends as the teacher, read back from its
    directory: the same weights again."""
    budget = {"data.labels_per_class": 5}
    alone = transferkit.fit(tiny_fit_config(image_folder, tmp_path / "alone").with_overrides(budget))
    semi = {**budget, "train.semi": "self-training", "train.semi.threshold": 0.9999}
    runs = {
        gate: transferkit.fit(
            tiny_fit_config(image_folder, tmp_path / str(gate)).with_overrides(
                {**semi, "train.semi.gate": gate}
            )
        )
        for gate in (False, True)
    }
    expected = load_file(alone.dir / "model" / "model.safetensors")
    for gate, run in runs.items():
        assert json.loads((run.dir / "pseudo_labels.json").read_text())["positions"] == []
        pool = json.loads(run.paths.metrics.read_text())["pool"]
        assert pool["on"] == "on validation" and not pool["helped"] and pool["used"] == (not gate)
        weights = load_file(run.dir / "model" / "model.safetensors")
        assert all(torch.equal(weights[name], expected[name]) for name in expected)
    assert "so the final model is the teacher's recipe" in (runs[True].dir / "report.md").read_text()
