"""A fine-tuned model is itself a source: chain two fits through `run:`."""

from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.errors import ModelError
from transferkit.files import sha256_of_file
from transferkit.models import resolve_model
from transferkit.testing import make_image_folder, tiny_fit_config


@pytest.fixture(scope="module")
def first_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    return transferkit.fit(tiny_fit_config(image_folder, tmp_path_factory.mktemp("first")))


def test_a_run_loads_with_its_weights_and_preprocessing(first_run: transferkit.Run) -> None:
    backbone = resolve_model(f"run:{first_run.dir}")
    assert backbone.architecture == "test_efficientnet"
    assert backbone.preprocessing.input_size == (3, 32, 32)
    assert backbone.weights_sha256 == sha256_of_file(first_run.dir / "model" / "model.safetensors")
    exported = torch.load(first_run.dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(backbone.model.state_dict()["conv_stem.weight"], exported["model.conv_stem.weight"])


def test_a_bundle_folder_works_without_the_prefix(first_run: transferkit.Run) -> None:
    assert resolve_model(str(first_run.dir / "model")).spec.startswith("run:")


def test_two_fits_chain(first_run: transferkit.Run, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "other", classes=("owl", "hare"), per_class=10, seed=1)
    config = tiny_fit_config(folder, tmp_path / "runs").with_overrides(
        {"model.name": f"run:{first_run.dir}", "model.pretrained": True}
    )
    second = transferkit.fit(config)
    assert second.metrics["num_samples"] == 5
    manifest = (second.dir / "manifest.json").read_text()
    assert sha256_of_file(first_run.dir / "model" / "model.safetensors") in manifest


def test_a_folder_without_a_bundle_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither a transferkit run directory nor a bundle"):
        resolve_model(f"run:{tmp_path}")


def test_a_truncated_weights_file_is_a_clear_error(first_run: transferkit.Run, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_bytes((first_run.dir / "model" / "config.json").read_bytes())
    (bundle / "model.safetensors").write_bytes(
        (first_run.dir / "model" / "model.safetensors").read_bytes()[:100]
    )
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        resolve_model(f"run:{bundle}")
