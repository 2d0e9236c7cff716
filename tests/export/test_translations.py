"""`CachedTranslation`: a bundle without a current model.onnx is translated once, then loads from cache."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.export import BundleInfo, save_bundle
from transferkit.export.bundle import OtherTask
from transferkit.export.pixel_models import PARITY_ATOL
from transferkit.export.translations import CachedTranslation, prune
from transferkit.models import resolve_model
from transferkit.training import fast_inference

LABELS = ["cat", "dog", "fox"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts with an empty cache, and its tiny images are worth translating."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)
    return tmp_path / "cache" / "translations"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle with no model.onnx, as older versions saved them: random-init weights at 32 px."""
    return _bundle(tmp_path / "bundle", seed=0)


def _bundle(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(LABELS))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    return save_bundle(backbone, BundleInfo(LABELS, {}, "animals"), folder)


def _pixels(count: int) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)


def test_the_first_load_translates_and_keeps_the_graph_the_next_runs(bundle: Path, own_cache: Path) -> None:
    pixels = _pixels(6)
    expected = transferkit.load(bundle, backend="torch").probabilities(pixels)
    first = transferkit.load(bundle, backend="auto", device="cpu")
    assert first.network is not None and not own_cache.exists()  # nothing kept before it matched
    np.testing.assert_allclose(first.probabilities(pixels), expected, atol=PARITY_ATOL)
    assert first.backend == "onnx" and len(list(own_cache.glob("*.onnx"))) == 1
    again = transferkit.load(bundle, backend="auto", device="cpu")
    assert again.network is None and again.backend == "onnx"  # the kept graph runs, no network is built
    np.testing.assert_allclose(again.probabilities(pixels), first.probabilities(pixels), atol=1e-6)
    assert not list(bundle.glob("*.onnx"))  # the bundle is never written to


def test_torch_keeps_nothing(bundle: Path, own_cache: Path) -> None:
    transferkit.load(bundle, backend="torch").probabilities(_pixels(4))
    assert not own_cache.exists()


def test_a_bundle_of_several_labels_runs_its_weights_and_keeps_nothing(
    bundle: Path, tmp_path: Path, own_cache: Path
) -> None:
    backbone = resolve_model(f"run:{bundle}")
    other = OtherTask("size", ["small", "large"], [torch.nn.Linear(backbone.num_features, 2)])
    info = BundleInfo(LABELS, {}, "animals")
    several = save_bundle(backbone, info, tmp_path / "several", other_tasks=[other])
    cached = CachedTranslation.of_bundle(several)
    assert cached is not None
    cached.path.parent.mkdir(parents=True)
    cached.path.write_bytes(b"")  # read, it would be dropped as damaged and replaced by a graph
    classifier = transferkit.load(several, backend="auto", device="cpu")
    classifier.probabilities(_pixels(3))
    assert classifier.network is not None and classifier.backend == "onnx"
    assert [path.stat().st_size for path in own_cache.glob("*.onnx")] == [0]


def test_other_weights_or_another_config_are_another_translation(bundle: Path, tmp_path: Path) -> None:
    key = CachedTranslation.of_bundle(bundle)
    assert key is not None and key == CachedTranslation.of_bundle(bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["preprocessing"]["mean"] = [0.0, 0.0, 0.0]  # the same weights under another normalization
    (bundle / "config.json").write_text(json.dumps(config))
    assert CachedTranslation.of_bundle(bundle) != key
    other = _bundle(tmp_path / "other", seed=1)
    assert CachedTranslation.of_bundle(other) not in (key, CachedTranslation.of_bundle(bundle))
    assert CachedTranslation.of_bundle(tmp_path / "nothing here") is None


def test_a_damaged_translation_is_dropped_and_made_again(
    bundle: Path, own_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cached = CachedTranslation.of_bundle(bundle)
    assert cached is not None
    cached.path.parent.mkdir(parents=True)
    cached.path.write_bytes(b"half a graph")
    with caplog.at_level(logging.WARNING):
        classifier = transferkit.load(bundle, backend="auto", device="cpu")
    assert classifier.network is not None and "translating the bundle again" in caplog.text
    classifier.probabilities(_pixels(4))
    assert cached.load() is not None  # replaced by a graph that matched


def test_a_cache_that_cannot_be_written_warns_and_predicts(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a file").write_text("not a folder")
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "a file"))
    pixels = _pixels(5)
    with caplog.at_level(logging.WARNING):
        probabilities = transferkit.load(bundle, backend="auto", device="cpu").probabilities(pixels)
    assert "not kept for the next load" in caplog.text
    expected = transferkit.load(bundle, backend="torch").probabilities(pixels)
    np.testing.assert_allclose(probabilities, expected, atol=PARITY_ATOL)


def test_prune_drops_the_least_recently_used_beyond_the_budget(tmp_path: Path) -> None:
    for age, name in enumerate(["newest", "older", "oldest"]):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    prune(tmp_path, keep=tmp_path / "newest.onnx", max_bytes=250)
    assert sorted(path.stem for path in tmp_path.glob("*.onnx")) == ["newest", "older"]
    prune(tmp_path, keep=tmp_path / "older.onnx", max_bytes=50)  # the one just written stays, alone
    assert [path.stem for path in tmp_path.glob("*.onnx")] == ["older"]
