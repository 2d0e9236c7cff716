"""ONNX export: the same probabilities as PyTorch at any batch size, or no file and a clear error."""

import filecmp
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError, ModelError
from transferkit.export import BundleInfo, Classifier, export_model, save_bundle
from transferkit.export import onnx as onnx_export
from transferkit.export.onnx import CheckImages, OnnxPixelModel, ParityError, check_parity
from transferkit.models import resolve_model
from transferkit.training import fast_inference

LABELS = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare bundle (no run around it): a random-init tiny network at 32 px."""
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(LABELS))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    return save_bundle(backbone, BundleInfo(LABELS, {}, "animals"), tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def exported(bundle: Path) -> onnx_export.ExportReport:
    return export_model(bundle)


@pytest.fixture(scope="module")
def classifier(bundle: Path) -> Classifier:
    return transferkit.load(bundle)


def _pixels(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 32, 32), generator=generator, dtype=torch.uint8)


def test_a_bare_bundle_is_checked_on_random_images_and_says_so(
    exported: onnx_export.ExportReport, bundle: Path
) -> None:
    assert exported.files == [bundle / "model.onnx"]
    assert exported.parity is not None
    assert exported.parity.max_abs_difference < 1e-4
    assert "random images (a bare bundle has no test images)" in exported.parity.description


@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnxruntime_matches_pytorch_at_any_batch_size(
    exported: onnx_export.ExportReport, classifier: Classifier, bundle: Path, batch_size: int
) -> None:
    images = CheckImages(_pixels(7, seed=batch_size), None, "7 random images")
    parity = check_parity(classifier, bundle / "model.onnx", images, batch_sizes=(batch_size,))
    assert parity.max_abs_difference < 1e-4
    onnx_model = OnnxPixelModel(bundle / "model.onnx")
    assert onnx_model(images.pixels[:batch_size]).shape == (batch_size, 3)


def test_the_onnx_backend_predicts_like_torch(
    exported: onnx_export.ExportReport, classifier: Classifier, bundle: Path, image_folder: Path
) -> None:
    paths = sorted(str(p) for p in image_folder.rglob("*_00[0-2].png"))
    on_onnx = transferkit.load(bundle, backend="onnx")
    assert on_onnx.backend == "onnx" and on_onnx.label_names == LABELS
    np.testing.assert_allclose(on_onnx.predict_proba(paths), classifier.predict_proba(paths), atol=1e-4)


def test_the_metadata_describes_input_labels_and_preprocessing(
    exported: onnx_export.ExportReport, classifier: Classifier, bundle: Path
) -> None:
    model = onnx.load(bundle / "model.onnx")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(metadata["label_names"]) == LABELS
    assert json.loads(metadata["preprocessing"])["input_size"] == [3, 32, 32]
    assert float(metadata["temperature"]) == 1.0
    assert "uint8" in metadata["input"] and "normalization is inside the model" in metadata["input"]
    (graph_input,) = model.graph.input
    assert graph_input.name == "pixels"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis


def test_a_mismatch_fails_and_leaves_no_model_onnx(
    exported: onnx_export.ExportReport, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = (bundle / "model.onnx").read_bytes()

    def reuse_export(classifier: Classifier, path: Path, weights_sha256: str | None) -> Path:  # no seconds
        path.write_bytes(good)
        return path

    original_call = OnnxPixelModel.__call__

    def drifting(self: OnnxPixelModel, pixels: torch.Tensor) -> torch.Tensor:
        logits = original_call(self, pixels)
        logits[:, 0] += 0.01
        return logits

    monkeypatch.setattr(onnx_export, "export_onnx", reuse_export)
    monkeypatch.setattr(OnnxPixelModel, "__call__", drifting)
    out = tmp_path / "out"
    with pytest.raises(ParityError, match=r"differs from PyTorch by .* \(tolerance 0.0001\)"):
        export_model(bundle, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_safetensors_format_copies_the_bundle(bundle: Path, tmp_path: Path) -> None:
    report = export_model(bundle, out=tmp_path / "copy", format="safetensors")
    names = sorted(p.name for p in report.files)
    assert "model.safetensors" in names and "config.json" in names
    assert all(filecmp.cmp(path, bundle / path.name, shallow=False) for path in report.files)
    assert transferkit.load(tmp_path / "copy").label_names == LABELS
    with pytest.raises(ConfigError, match="give --out DIR"):
        export_model(bundle, format="safetensors")
    with pytest.raises(ConfigError, match="use it with --format onnx"):
        export_model(bundle, out=tmp_path / "x", format="safetensors", quantize="int8")


def test_an_unreadable_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        OnnxPixelModel(tmp_path / "model.onnx")


def test_auto_predicts_with_a_current_model_onnx_and_not_with_a_stale_one(
    exported: onnx_export.ExportReport, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)  # tiny images: translate even a few
    assert transferkit.load(bundle, backend="auto", device="cpu").backend == "onnx"
    assert transferkit.load(bundle, backend="auto", device="cpu").network is None
    # The same model.onnx beside other weights (a bundle saved again after the export) is stale.
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(LABELS))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    other = save_bundle(backbone, BundleInfo(LABELS, {}, "animals"), tmp_path / "other")
    (other / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes())
    from_weights = transferkit.load(other, backend="auto", device="cpu")
    assert from_weights.network is not None  # the bundle's weights run, translated in memory, not the file
    reference = transferkit.load(other, backend="torch")
    pixels = _pixels(5)
    np.testing.assert_allclose(from_weights.probabilities(pixels), reference.probabilities(pixels), atol=1e-4)
    assert from_weights.backend == "onnx" and reference.backend == "torch"
