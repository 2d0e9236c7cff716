"""Features on disk: keyed by what they depend on, reused, and equal to a fresh forward pass."""

from pathlib import Path

import pytest
import torch

from transferkit.models import Backbone, resolve_model
from transferkit.ranking import FeatureCache, cached_features, features_key
from transferkit.ranking.candidates import body_parameters, source_head_logits
from transferkit.training.features import FeatureNetwork, extract_features
from transferkit.transforms import Normalize


@pytest.fixture
def tiny() -> Backbone:
    torch.manual_seed(0)
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.preprocessing = backbone.preprocessing.resized(32)
    return backbone


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)


def test_the_key_follows_weights_preprocessing_and_images_but_not_the_head(
    tiny: Backbone, images: torch.Tensor
) -> None:
    key = features_key(tiny, images)
    assert features_key(tiny, images.clone()) == key
    changed_pixel = images.clone()
    changed_pixel[0, 0, 0, 0] ^= 1
    assert features_key(tiny, changed_pixel) != key
    tiny.reset_head(3)  # what a linear probe does first: its features are still the same
    assert features_key(tiny, images) == key
    resized = Backbone(**{**tiny.__dict__, "preprocessing": tiny.preprocessing.resized(48)})
    assert features_key(resized, images) != key
    with torch.no_grad():
        tiny.model.conv_stem.weight[0, 0, 0, 0] += 1e-3  # type: ignore[index, union-attr]
    assert features_key(tiny, images) != key


def test_batchnorm_statistics_are_part_of_the_key(tiny: Backbone, images: torch.Tensor) -> None:
    key = features_key(tiny, images)
    batchnorm = next(m for m in tiny.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batchnorm.running_mean += 0.5
    assert features_key(tiny, images) != key


def test_cached_features_equal_a_fresh_pass_and_are_reused(
    tiny: Backbone, images: torch.Tensor, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path)
    normalize = Normalize(tiny.preprocessing)
    fresh = extract_features(tiny, normalize, images)
    first = cached_features(tiny, normalize, images, cache, batch_size=2)
    second = cached_features(tiny, normalize, images, cache, batch_size=2)
    assert (first.from_cache, second.from_cache) == (False, True)
    # onnxruntime's sums depend slightly on the batch size (2 here, 64 for `fresh`)
    torch.testing.assert_close(first.features, fresh, rtol=0, atol=1e-5)
    assert torch.equal(second.features, first.features)
    assert first.images_per_second is not None  # three batches: the last two were timed
    assert second.images_per_second == first.images_per_second  # kept with the features


def test_a_single_batch_is_timed_on_a_second_pass(
    tiny: Backbone, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    forward = FeatureNetwork.forward

    def counted(network: FeatureNetwork, pixels: torch.Tensor) -> torch.Tensor:
        passes.append(len(pixels))
        return forward(network, pixels)

    monkeypatch.setattr(FeatureNetwork, "forward", counted)
    extracted = cached_features(tiny, Normalize(tiny.preprocessing), images, cache=None, batch_size=64)
    assert not extracted.from_cache
    assert extracted.images_per_second is not None and extracted.images_per_second > 0
    assert passes == [6, 6]  # the extraction, then the timed pass of the same batch (this job: PyTorch)


def test_a_damaged_cache_file_is_recomputed(tiny: Backbone, images: torch.Tensor, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    normalize = Normalize(tiny.preprocessing)
    features = cached_features(tiny, normalize, images, cache).features
    (tmp_path / f"{features_key(tiny, images)}.safetensors").write_bytes(b"half a file")
    again = cached_features(tiny, normalize, images, cache)
    assert not again.from_cache
    assert torch.equal(again.features, features)


def test_the_source_head_on_cached_features_is_the_full_forward_pass(
    tiny: Backbone, images: torch.Tensor
) -> None:
    normalize = Normalize(tiny.preprocessing)
    logits = source_head_logits(tiny, extract_features(tiny, normalize, images))
    with torch.no_grad():
        expected = tiny.model.eval()(normalize(images))
    assert logits is not None
    assert logits.shape == (6, 1000)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_a_model_without_a_classifier_has_no_source_predictions(tiny: Backbone) -> None:
    with_head = body_parameters(tiny)
    tiny.reset_head(0)  # timm's way of building a network without a classifier
    assert source_head_logits(tiny, torch.zeros(2, tiny.num_features)) is None
    assert body_parameters(tiny) == with_head
