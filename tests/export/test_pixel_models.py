"""`CheckedPixelModel`: onnxruntime runs a classifier only once it has matched PyTorch on its first batch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.errors import MissingDependencyError, UnknownNameError
from transferkit.export import BundleInfo, Classifier, load, pixel_models, save_bundle
from transferkit.export.pixel_models import PARITY_ATOL, CheckedPixelModel
from transferkit.models import resolve_model
from transferkit.training import fast_inference
from transferkit.training.fast_inference import relative_difference
from transferkit.training.features import FEATURE_TOLERANCE, extract_features
from transferkit.transforms.normalize import Normalize
from transferkit.transforms.views import TEST_VIEWS

LABELS = ["cat", "dog", "fox"]


@pytest.fixture(autouse=True)
def translate_any_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """These images are tiny: every job is worth translating here (but for the test of the rule)."""
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(LABELS))
    return backbone.model


def _classifier(model: torch.nn.Module, backend: str) -> Classifier:
    preprocessing = resolve_model("timm:test_efficientnet", pretrained=False).preprocessing.resized(32)
    views = tuple(TEST_VIEWS.values())
    return Classifier.from_network(
        model, LABELS, preprocessing, views=views, device=torch.device("cpu"), backend=backend
    )


def _pixels(count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(count)
    return torch.randint(0, 256, (count, 3, 32, 32), generator=generator, dtype=torch.uint8)


def test_auto_runs_onnxruntime_with_pytorchs_probabilities(model: torch.nn.Module) -> None:
    checked, eager = _classifier(model, "auto"), _classifier(model, "torch")
    assert checked.backend == "auto"  # nothing is decided before an image
    assert checked.inference is not None and checked.inference.max_difference is None
    pixels = _pixels(11)
    probabilities = checked.probabilities(pixels)
    np.testing.assert_allclose(probabilities, eager.probabilities(pixels), atol=PARITY_ATOL)
    assert checked.backend == "onnx" and eager.backend == "torch"
    assert eager.inference is not None and eager.inference.reason == "asked for"
    choice = checked.inference
    assert choice is not None and choice.max_difference is not None
    assert choice.max_difference <= PARITY_ATOL and choice.checked_on == 4
    # later batches, of any size, run on onnxruntime with the same results
    for count in (1, 7):
        more = _pixels(count)
        np.testing.assert_allclose(checked.probabilities(more), eager.probabilities(more), atol=PARITY_ATOL)


def test_view_logits_are_the_same_in_any_batch(model: torch.nn.Module) -> None:
    eager, pixels = _classifier(model, "torch"), _pixels(9)
    whole = eager.view_logits(pixels, batch_size=64)
    assert whole.shape == (len(TEST_VIEWS), 9, 3)
    np.testing.assert_allclose(eager.view_logits(pixels, batch_size=4), whole, atol=1e-5)
    # each view's logits are the network's on that view of the images
    names = list(TEST_VIEWS)
    flipped = eager.pixel_model(torch.flip(pixels, dims=[3]).numpy())
    np.testing.assert_allclose(whole[names.index("hflip")], flipped, atol=1e-5)
    turned = eager.pixel_model(torch.rot90(pixels, 1, dims=(2, 3)).contiguous().numpy())
    np.testing.assert_allclose(whole[names.index("rot90")], turned, atol=1e-5)


def test_a_translation_that_differs_falls_back_to_pytorch(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pixel_models, "PARITY_ATOL", -1.0)  # any difference is too large
    checked, pixels = _classifier(model, "auto"), _pixels(5)
    with caplog.at_level(logging.WARNING):
        probabilities = checked.probabilities(pixels)
    assert checked.backend == "torch"
    assert checked.inference is not None and "differs from PyTorch" in checked.inference.reason
    assert "running with PyTorch" in caplog.text
    np.testing.assert_allclose(probabilities, _classifier(model, "torch").probabilities(pixels), atol=1e-6)


def test_a_failed_translation_falls_back_to_pytorch(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise RuntimeError("an operator onnx lacks")

    monkeypatch.setattr(fast_inference, "in_memory_onnx", refuse)
    checked = _classifier(model, "auto")
    checked.probabilities(_pixels(3))
    assert checked.backend == "torch"
    assert checked.inference is not None and "an operator onnx lacks" in checked.inference.reason


def test_without_onnxruntime_auto_runs_pytorch_and_onnx_is_an_error(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_inference.importlib.util, "find_spec", lambda name: None)
    checked = _classifier(model, "auto")
    checked.probabilities(_pixels(2))
    assert checked.backend == "torch"
    assert checked.inference is not None and "pip install 'transferkit[onnx]'" in checked.inference.reason
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        _classifier(model, "onnx").probabilities(_pixels(2))


def test_torch_is_never_translated_and_names_are_checked(model: torch.nn.Module) -> None:
    network = _classifier(model, "torch").network
    assert network is not None
    with pytest.raises(UnknownNameError, match="tensorrt"):
        CheckedPixelModel(network, backend="tensorrt")
    asked = CheckedPixelModel(network, torch.device("cpu"), backend="torch")
    assert (asked.backend, asked.summary.reason) == ("torch", "asked for")


def test_frozen_features_come_from_onnxruntime_with_pytorchs_values(model: torch.nn.Module) -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    normalize = Normalize(backbone.preprocessing.resized(32))
    pixels = _pixels(10)
    backbone.model.train()
    features = extract_features(backbone, normalize, pixels, batch_size=4)
    assert backbone.model.training  # its mode is given back
    with torch.no_grad():
        eager = backbone.model.eval().forward_head(
            backbone.model.forward_features(normalize(pixels)), pre_logits=True
        )
    assert features.shape == (10, backbone.num_features)
    assert relative_difference(features, eager) <= FEATURE_TOLERANCE


def test_a_job_too_small_to_pay_for_a_translation_runs_on_pytorch_undecided(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = len(TEST_VIEWS)
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 4 * 3 * 32 * 32 * views)  # 4 images, every view
    checked, eager = _classifier(model, "auto"), _classifier(model, "torch")
    small = _pixels(3)
    np.testing.assert_array_equal(checked.view_logits(small), eager.view_logits(small))
    assert checked.backend == "auto" and checked.inference is not None
    assert checked.inference.reason == "jobs too small to pay for a translation"
    checked.view_logits(_pixels(4))  # large enough: translated, checked, and kept
    assert checked.backend == "onnx"


def test_a_large_job_in_small_batches_translates(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = len(TEST_VIEWS)
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 8 * 3 * 32 * 32 * views)  # 8 images, every view
    checked, eager = _classifier(model, "auto"), _classifier(model, "torch")
    images = list(_pixels(9).permute(0, 2, 3, 1).numpy())
    probabilities = checked.predict_proba(images, batch_size=2)  # every batch alone is too small
    assert checked.backend == "onnx"
    np.testing.assert_allclose(probabilities, eager.predict_proba(images), atol=PARITY_ATOL)


def test_the_bundle_keeps_the_checked_translation_and_drops_it_when_there_is_none(
    model: torch.nn.Module, tmp_path: Path
) -> None:
    checked = _classifier(model, "auto")
    pixels = _pixels(6)
    expected = checked.probabilities(pixels)
    assert checked.translation is not None and _classifier(model, "torch").translation is None
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.model, backbone.preprocessing = model, checked.preprocessing
    info = BundleInfo(LABELS, {}, "pets", test_time_views=tuple(TEST_VIEWS))
    save_bundle(backbone, info, tmp_path / "model", onnx=checked.translation)
    from_file = load(tmp_path / "model", backend="auto")
    assert from_file.network is None  # the kept graph runs, stamped with these weights
    np.testing.assert_allclose(from_file.probabilities(pixels), expected, atol=1e-6)
    save_bundle(backbone, info, tmp_path / "model")  # saved again without a translation
    assert not (tmp_path / "model" / "model.onnx").exists()
