"""Frozen lower layers cached once: the same training as recomputing them every epoch, only faster."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config
from transferkit.training import prefix_cache


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


def _probabilities(image_folder: Path, out: Path) -> torch.Tensor:
    config = tiny_fit_config(image_folder, out, epochs=2).with_overrides(
        {"train.strategy": "partial:1", "preprocess.augment": "none", "train.optimizer": "sgd"}
    )
    classifier = transferkit.load(transferkit.fit(config).dir / "model")
    return torch.tensor(classifier.predict_proba(sorted(image_folder.rglob("*.png"))))


def test_cached_training_matches_training_through_the_frozen_layers(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cached = _probabilities(image_folder, tmp_path / "cached")
    assert "cache frozen layers below" in capsys.readouterr().err
    monkeypatch.setattr(prefix_cache, "MAX_CACHE_BYTES", 0)  # too little memory: recompute every epoch
    uncached = _probabilities(image_folder, tmp_path / "uncached")
    assert "cache frozen layers below" not in capsys.readouterr().err
    # SGD: Adam would turn the rounding differences of near-zero gradients (other batch sizes through
    # the frozen layers) into full-size steps, and the comparison could not be this tight.
    assert (cached - uncached).abs().max() < 1e-5
