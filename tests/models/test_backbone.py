import pytest
import torch

from transferkit.errors import ModelError, TransferkitError
from transferkit.models import resolve_model


@pytest.fixture(scope="module")
def tiny():
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(3)
    return backbone


def test_layer_groups_cover_every_parameter_once_head_last(tiny) -> None:
    groups = tiny.layer_groups()
    flat = [id(p) for group in groups for p in group]
    assert len(flat) == len(set(flat)) == len(list(tiny.model.parameters()))
    assert {id(p) for p in groups[-1]} == {id(p) for p in tiny.head().parameters()}
    assert len(groups) >= 3


def test_reset_head_changes_the_number_of_classes(tiny) -> None:
    assert tiny.head().out_features == 3


def test_unknown_timm_model_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        resolve_model("timm:not_a_network", pretrained=False)


def test_random_init_has_no_weights_hash(tiny) -> None:
    assert tiny.weights_sha256 is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("efficientnet_lite", "Did you mean .*'efficientnet_lite0'"),
        ("resnet18", "Did you mean 'timm:resnet18'"),
        ("timm:resnet_does_not_exist", "Unknown timm architecture 'resnet_does_not_exist'"),
        ("timm:resnet500", "Closest: .*resnet50"),
        ("nosuchsource:model", "Valid model names"),
    ],
)
def test_unknown_models_list_valid_names(spec: str, message: str) -> None:
    with pytest.raises(TransferkitError, match=message):
        resolve_model(spec, pretrained=False)


def test_four_channel_input_repeats_the_kernels_as_timm_does() -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    stem = backbone.model.conv_stem
    rgb = torch.rand(1, 3, 16, 16)
    before = stem(rgb)
    backbone.adapt_input_channels(4)
    assert stem.in_channels == 4
    after = stem(torch.cat([rgb, torch.zeros(1, 1, 16, 16)], dim=1))
    assert torch.allclose(after, 0.75 * before, atol=1e-6)  # kernels [R, G, B, R] scaled by 3/4
    assert backbone.preprocessing.input_size[0] == 4
    assert backbone.preprocessing.mean == (0.485, 0.456, 0.406, 0.485)  # repeated like the kernels


def test_grayscale_needs_no_adaptation() -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.adapt_input_channels(1)
    assert backbone.model.conv_stem.in_channels == 3
