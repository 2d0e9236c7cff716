"""Frozen lower layers cached once: the same training as recomputing them every epoch, only faster."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config
from transferkit.training import prefix_cache
from transferkit.transforms.augment import d4_view, random_d4


def test_the_cut_is_the_largest_fully_trained_module_above_the_frozen_ones() -> None:
    model = resolve_model("timm:test_efficientnet", pretrained=False).model
    trained = {
        id(p)
        for name, p in model.named_parameters()
        if not name.startswith(("conv_stem", "bn1", "blocks.0", "blocks.1"))
    }
    assert prefix_cache.cut_point(model, trained) == "blocks.2"
    assert prefix_cache.modules_before(model, "blocks.2") == ["conv_stem", "bn1", "blocks.0", "blocks.1"]
    assert prefix_cache.cut_point(model, {id(p) for p in model.parameters()}) is None  # nothing frozen


def test_a_cached_view_is_the_one_the_augmentation_would_have_drawn() -> None:
    image = torch.arange(2 * 5 * 5, dtype=torch.uint8).reshape(2, 5, 5)  # no symmetry of its own
    views = torch.stack([d4_view(image, index) for index in range(random_d4.views)])
    assert len({tuple(view.flatten().tolist()) for view in views}) == 8  # the 8 symmetries, all distinct
    for seed in range(16):
        torch.manual_seed(seed)
        drawn = random_d4(image)
        torch.manual_seed(seed)
        assert torch.equal(prefix_cache.PickView(random_d4)(views), drawn)


def _probabilities(image_folder: Path, out: Path, augment: str, epochs: int) -> torch.Tensor:
    config = tiny_fit_config(image_folder, out, epochs=epochs).with_overrides(
        {"train.strategy": "partial:1", "preprocess.augment": augment, "train.optimizer": "sgd"}
    )
    classifier = transferkit.load(transferkit.fit(config).dir / "model")
    return torch.tensor(classifier.predict_proba(sorted(image_folder.rglob("*.png"))))


@pytest.mark.parametrize("augment_epochs", [("none", 2), ("d4", 8)])  # d4: an epoch per view
def test_cached_training_matches_training_through_the_frozen_layers(
    augment_epochs: tuple[str, int],
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    augment, epochs = augment_epochs
    cached = _probabilities(image_folder, tmp_path / "cached", augment, epochs)
    assert "cache frozen layers below" in capsys.readouterr().err
    monkeypatch.setattr(prefix_cache, "MAX_CACHE_BYTES", 0)  # too little memory: recompute every epoch
    uncached = _probabilities(image_folder, tmp_path / "uncached", augment, epochs)
    assert "cache frozen layers below" not in capsys.readouterr().err
    # SGD: Adam would turn the rounding differences of near-zero gradients (other batch sizes through
    # the frozen layers) into full-size steps, and the comparison could not be this tight.
    assert (cached - uncached).abs().max() < 1e-5


def test_views_stay_uncached_when_the_run_has_fewer_epochs_than_views(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _probabilities(image_folder, tmp_path, "d4", epochs=2)  # 8 views cached would cost more than 2 passes
    assert "cache frozen layers below" not in capsys.readouterr().err
