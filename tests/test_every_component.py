"""Every registered strategy and augmentation preset runs a tiny fit end to end (automatic smoke tests)."""

from pathlib import Path

import pytest

import transferkit
from transferkit.testing import tiny_fit_config
from transferkit.training.strategies import strategies
from transferkit.transforms import augment_presets


@pytest.mark.parametrize("strategy", [f"{n}:1" if n == "partial" else n for n in strategies.names()])
def test_every_strategy_fits_and_exports_a_plain_model(
    strategy: str, image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"train.strategy": strategy})
    run = transferkit.fit(config)
    assert 0.0 <= run.headline["accuracy"] <= 1.0
    # the bundle loads into the plain architecture (adapters merged) and predicts what fit evaluated
    classifier = transferkit.load(run.dir / "model")
    image = next(image_folder.rglob("*.png"))
    assert classifier.predict([image])[0].label in {"cat", "dog", "fox"}


@pytest.mark.parametrize("preset", augment_presets.names())
def test_every_augmentation_preset_fits(preset: str, image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"preprocess.augment": preset})
    assert transferkit.fit(config).metrics["num_samples"] == 9


@pytest.mark.parametrize("data", ["digits"])
def test_packaged_datasets_fit(data: str, tmp_path: Path) -> None:
    config = tiny_fit_config(data, tmp_path).with_overrides({"data.subset": 120})
    run = transferkit.fit(config)
    assert run.metrics["num_samples"] == 30
