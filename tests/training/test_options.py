"""Every training option runs end to end, and the ones with a visible effect show it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.config import TrainConfig
from transferkit.errors import ConfigError, ModelError
from transferkit.models import Backbone, resolve_model
from transferkit.testing import tiny_fit_config
from transferkit.training.lr_range import suggest_rate
from transferkit.training.method_options import L2SPOptions
from transferkit.training.module import TransferModule
from transferkit.training.regularizers import L2SP, create_regularizer
from transferkit.training.strategies import create_strategy


def _fit(image_folder: Path, out: Path, **overrides: Any) -> transferkit.Run:
    config = tiny_fit_config(image_folder, out, epochs=2).with_overrides(overrides)
    return transferkit.fit(config)


def _epochs(run: transferkit.Run) -> list[dict[str, str]]:
    with (run.dir / "metrics.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["phase"] != "head"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.mixup": 0.2, "train.cutmix": 1.0},
        {"train.ema": True, "train.optimizer": "sgd", "train.accumulate": 2},
        {"train.regularizer": "l2-sp", "train.balance": "sampler"},
        {"train.balance": "weights", "train.early_stopping": 1, "train.epochs": 4},
    ],
    ids=["mixup+cutmix", "ema+sgd+accumulate", "l2-sp+sampler", "weights+early-stopping"],
)
def test_training_options_fit_end_to_end(
    overrides: dict[str, Any], image_folder: Path, tmp_path: Path
) -> None:
    run = _fit(image_folder, tmp_path, **overrides)
    assert 0.0 <= run.headline["accuracy"] <= 1.0
    assert all(float(row["train_loss"]) == float(row["train_loss"]) for row in _epochs(run))  # not NaN


def test_a_time_budget_stops_training_cleanly_and_evaluates(image_folder: Path, tmp_path: Path) -> None:
    run = _fit(image_folder, tmp_path, **{"train.epochs": 50, "train.time_budget": 1e-4})
    assert len(_epochs(run)) < 50
    assert (run.dir / "report.md").is_file()


def test_lr_auto_runs_a_range_test_and_shows_its_plot(image_folder: Path, tmp_path: Path) -> None:
    run = _fit(image_folder, tmp_path, **{"train.lr": "auto"})
    assert (run.dir / "lr_range_test.json").is_file()
    assert "lr_range_test.png" in (run.dir / "report.md").read_text()


def test_the_suggested_rate_is_where_the_loss_falls_fastest() -> None:
    rates = [10.0**e for e in range(-6, 1)]
    losses = [2.0, 2.0, 1.9, 1.2, 0.9, 0.8, 3.0]
    assert suggest_rate(rates, losses) == 1e-3  # the steepest drop, before the minimum at 1e-1


def test_l2_sp_pulls_toward_the_pretrained_weights_and_replaces_weight_decay() -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(2)
    config = TrainConfig(strategy="full", regularizer={"name": "l2-sp", "strength": 0.5}, weight_decay=0.05)
    regularizer = create_regularizer(config)
    module = TransferModule(backbone, create_strategy(config), config, regularizer=regularizer)
    assert isinstance(regularizer, L2SP) and regularizer.anchor
    assert float(regularizer.distance(backbone.model).detach()) == 0.0
    with torch.no_grad():
        next(backbone.model.parameters()).add_(1.0)
    distance = float(regularizer.distance(backbone.model).detach())
    assert distance > 0.0
    assert float(module.regularizer.penalty(backbone.model).detach()) == pytest.approx(0.5 / 2 * distance)
    groups = create_strategy(config).param_groups(backbone)
    assert len(groups) > 1
    assert regularizer.decays("head") and not regularizer.decays(groups[0]["name"])


def _chained_start() -> tuple[Backbone, dict[str, torch.Tensor]]:
    """The packaged Lite0 with moved weights and a new head, as a run: fine-tuned from it would load,
    and the ImageNet weights it began with."""
    backbone = resolve_model("efficientnet_lite0")
    imagenet = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    with torch.no_grad():
        for param in backbone.model.parameters():
            param.add_(0.01)
    backbone.ancestry = ({"spec": "efficientnet_lite0", "weights_sha256": backbone.weights_sha256},)
    backbone.spec = "run:runs/cats-and-dogs"
    backbone.reset_head(3)
    return backbone, imagenet


def test_l2_sp_toward_the_ancestor_pulls_a_chained_start_back_to_its_imagenet_weights() -> None:
    backbone, imagenet = _chained_start()
    toward_start = L2SP(L2SPOptions(strength=1.0))
    toward_start.bind_backbone(backbone)
    toward_ancestor = L2SP(L2SPOptions(strength=1.0, toward="ancestor"))
    toward_ancestor.bind_backbone(backbone)
    assert float(toward_start.distance(backbone.model).detach()) == 0.0
    assert float(toward_ancestor.distance(backbone.model).detach()) > 0.0
    head = {id(p) for p in backbone.head().parameters()}
    body = [(n, p) for n, p in backbone.model.named_parameters() if id(p) not in head]
    assert set(toward_ancestor.anchor) == {n for n, _ in body}  # the new head has no start to keep
    assert all(torch.equal(toward_ancestor.anchor[n], imagenet[n]) for n, _ in body)


def test_l2_sp_toward_the_ancestor_needs_one_with_the_recorded_weights() -> None:
    backbone, _ = _chained_start()
    backbone.ancestry = ({"spec": "efficientnet_lite0", "weights_sha256": "0" * 64},)
    with pytest.raises(ModelError, match=r"efficientnet_lite0.*changed since"):
        L2SP(L2SPOptions(toward="ancestor")).bind_backbone(backbone)
    backbone.ancestry = ()
    with pytest.raises(ConfigError, match="records a pretrained ancestor"):
        L2SP(L2SPOptions(toward="ancestor")).bind_backbone(backbone)


@pytest.mark.parametrize(("batchnorm", "statistics_move"), [("adapt", True), ("frozen", False)])
def test_batchnorm_statistics_adapt_to_the_new_data_unless_frozen(
    batchnorm: str, statistics_move: bool
) -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(2)
    config = TrainConfig(strategy="full", batchnorm=batchnorm)
    module = TransferModule(backbone, create_strategy(config), config)
    norms = [m for m in backbone.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    module.train()
    module.on_train_batch_start((torch.empty(0), torch.empty(0)), 0)
    module.loss(
        torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), seed=0
    ).backward()
    moved = [not torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True)]
    assert all(moved) if statistics_move else not any(moved)
    assert all(p.grad is not None for m in norms for p in m.parameters())  # scale and shift train either way


def test_a_random_network_adapts_its_batchnorm_statistics(image_folder: Path, tmp_path: Path) -> None:
    run = _fit(image_folder, tmp_path, **{"model.pretrained": False, "train.epochs": 1})
    assert run.config.train.batchnorm == "adapt"
    assert "batchnorm: adapt" in (run.dir / "config.yaml").read_text()
