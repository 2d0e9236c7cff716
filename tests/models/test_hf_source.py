"""hf:<name> or a save_pretrained folder: transformers models with their image processor's preprocessing."""

from pathlib import Path

import pytest
import torch
import transformers  # the dev extra: a missing one fails, not skips

import transferkit
from transferkit.errors import ModelError
from transferkit.files import sha256_of_file
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A tiny ViT classifier and its image processor, saved as a hub download would be."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
        image_size=32, patch_size=8, num_labels=5,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config).eval()
    folder = tmp_path_factory.mktemp("vit")
    model.save_pretrained(folder)
    processor = transformers.ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6], resample=3
    )
    processor.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("prefix", ["hf:", ""])
def test_a_saved_classifier_predicts_as_before(vit_folder: tuple[Path, torch.nn.Module], prefix: str) -> None:
    folder, original = vit_folder
    backbone = resolve_model(f"{prefix}{folder}")
    assert (backbone.family, backbone.architecture) == ("hf", "ViTForImageClassification")
    assert backbone.weights_sha256 == sha256_of_file(folder / "model.safetensors")
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = original(pixel_values=images).logits
        assert torch.allclose(backbone.model.eval()(images), expected, atol=1e-5)
        assert backbone.forward_features(images).shape == (2, 32)


def test_preprocessing_comes_from_the_image_processor(vit_folder: tuple[Path, torch.nn.Module]) -> None:
    prep = resolve_model(str(vit_folder[0]), pretrained=False).preprocessing
    assert prep.input_size == (3, 32, 32)
    assert prep.mean == pytest.approx((0.1, 0.2, 0.3))
    assert prep.std == pytest.approx((0.4, 0.5, 0.6))
    assert (prep.interpolation, prep.crop_pct) == ("bicubic", 1.0)


def test_layer_groups_are_embeddings_then_each_encoder_layer(
    vit_folder: tuple[Path, torch.nn.Module],
) -> None:
    backbone = resolve_model(str(vit_folder[0]))
    backbone.reset_head(3)
    groups = backbone.layer_groups()
    flat = [id(p) for group in groups for p in group]
    assert len(flat) == len(set(flat)) == len(list(backbone.model.parameters()))
    assert len(groups) == 7  # embeddings, 4 encoder layers (90 % of the weights), final layernorm, head


def test_a_folder_without_its_image_processor_is_refused(tmp_path: Path) -> None:
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="no image processor config"):
        resolve_model(str(tmp_path))


def test_a_model_type_without_classifier_is_pooled(tmp_path: Path) -> None:
    config = transformers.CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    transformers.CLIPVisionModel(config).save_pretrained(tmp_path)
    transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(tmp_path)
    backbone = resolve_model(str(tmp_path))
    assert backbone.preprocessing.input_size == (3, 32, 32)
    backbone.reset_head(4)
    assert backbone.model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_offline_hub_fails_at_once_saying_how_to_load_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=r"not in the local cache .*save_pretrained"):
        resolve_model("hf:google/vit-base-patch16-224")


def test_fit_and_chain_a_transformers_model(
    vit_folder: tuple[Path, torch.nn.Module], image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"model.name": str(vit_folder[0]), "model.pretrained": True}
    )
    first = transferkit.fit(config)
    chained = resolve_model(f"run:{first.dir}")
    assert (chained.family, chained.architecture) == ("hf", "ViTForImageClassification")
    saved = torch.load(first.dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    key = "body.vit.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(chained.model.state_dict()[key], saved[f"model.{key}"])
