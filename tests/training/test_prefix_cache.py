"""Frozen lower layers cached once: the same training as recomputing them every epoch, only faster."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import transferkit
from transferkit.config import TrainConfig
from transferkit.data.cache import SplitImages
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config
from transferkit.training import fast_inference, prefix_cache
from transferkit.training.data_order import SeededBatchSampler
from transferkit.training.inference import run_batched
from transferkit.training.module import TransferModule, step_seed
from transferkit.training.strategies import create_strategy
from transferkit.transforms import Normalize
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
    assert prefix_cache.modules_from(model, "blocks.2") == [
        *("blocks.2", "blocks.3", "blocks.4"),
        *("conv_head", "bn2", "global_pool", "classifier"),
    ]
    assert prefix_cache.cut_point(model, {id(p) for p in model.parameters()}) is None  # nothing frozen


def test_a_cached_view_is_the_one_the_augmentation_would_have_drawn() -> None:
    image = torch.arange(2 * 5 * 5, dtype=torch.uint8).reshape(2, 5, 5)  # no symmetry of its own
    views = torch.stack([d4_view(image, index) for index in range(random_d4.views)])
    assert len({tuple(view.flatten().tolist()) for view in views}) == 8  # the 8 symmetries, all distinct
    rows = torch.arange(random_d4.views)
    for seed in range(16):
        torch.manual_seed(seed)
        drawn = random_d4(image)
        torch.manual_seed(seed)
        assert torch.equal(prefix_cache.PickView(random_d4, views)(rows), drawn)


def test_a_view_the_plan_left_out_is_an_error_not_a_silent_substitute() -> None:
    views = torch.zeros(1, 2, 3)
    unplanned = torch.full((random_d4.views,), -1)
    with pytest.raises(RuntimeError, match="did not plan"):
        prefix_cache.PickView(random_d4, views)(unplanned)


def _probabilities(image_folder: Path, out: Path, augment: str, epochs: int) -> torch.Tensor:
    # fine-tune counts its frozen groups from the bottom of the whole network: cut, it would train fewer
    config = tiny_fit_config(image_folder, out, epochs=epochs).with_overrides(
        {"train.strategy": "fine-tune", "preprocess.augment": augment, "train.optimizer": "sgd"}
    )
    classifier = transferkit.load(transferkit.fit(config).dir / "model")
    return torch.tensor(classifier.predict_proba(sorted(image_folder.rglob("*.png"))))


# d4 with 3 epochs: only the views the batches draw are cached (a missed one would raise)
@pytest.mark.parametrize("augment_epochs", [("none", 2), ("d4", 3), ("d4", 8)])
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


def test_frozen_layers_cached_through_onnxruntime_train_as_pytorch_does(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("onnxruntime")
    pytorch = _probabilities(image_folder, tmp_path / "pytorch", "d4", epochs=3)
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)  # a job of any size translates
    with caplog.at_level(logging.INFO, logger=fast_inference.__name__):
        onnx = _probabilities(image_folder, tmp_path / "onnx", "d4", epochs=3)
    assert "onnxruntime runs Sequential" in caplog.text  # the cache's lower layers
    # The frozen layers' outputs differ by rounding (about 1e-7), which 3 epochs of SGD on this randomly
    # initialized network carry into the weights (the losses differ from the second epoch on): the
    # probabilities then differ by 0.8e-3 averaged over 4 test-time views, 1.3e-3 over all 8.
    assert (onnx - pytorch).abs().max() < 2e-3


def test_a_one_epoch_run_stays_uncached(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _probabilities(image_folder, tmp_path, "d4", epochs=1)  # one pass either way: nothing to save
    assert "cache frozen layers below" not in capsys.readouterr().err


def test_a_cross_validated_run_caches_its_final_model_without_a_validation_split(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the final model trains on train and validation together: its empty val split goes through the
    # cache too (it once failed there, after every fold had trained)
    config = tiny_fit_config(image_folder, tmp_path, epochs=3).with_overrides(
        {"train.strategy": "fine-tune", "preprocess.augment": "d4", "cv.folds": 2}
    )
    run = transferkit.fit(config)
    assert capsys.readouterr().err.count("cache frozen layers below") == 3  # 2 folds, then the final model
    assert len(json.loads((run.dir / "metrics.json").read_text())["cv"]["folds"]) == 2


def test_the_plan_holds_each_epochs_draws_and_fewer_pairs_than_epochs() -> None:
    module = SimpleNamespace(seed=3, strategy=SimpleNamespace(train_epochs=7))
    sampler = SeededBatchSampler(40, 8, seed=3, epoch_of=lambda: 0, drop_last=True)
    planned = prefix_cache.planned_views(module, sampler, random_d4)  # type: ignore[arg-type]
    assert planned.shape == (40, 8) and planned.any(1).all()  # every image drawn, each epoch
    assert 40 < int(planned.sum()) < 7 * 40  # about 4.9 views of 8 per image for 7 epochs
    torch.manual_seed(step_seed(3, 6, 4, rank=0))  # the last step of the last epoch, replayed
    last = sampler.order(6)[32:40]
    assert all(planned[image, random_d4.draw()] for image in last)


@pytest.mark.parametrize("augment", ["light", "crop"])
def test_frozen_layers_streamed_through_onnxruntime_train_as_pytorch_does(
    augment: str,
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # random crops cannot be cached: the frozen layers run on onnxruntime inside each step instead
    pytest.importorskip("onnxruntime")
    with caplog.at_level(logging.INFO):
        pytorch = _probabilities(image_folder, tmp_path / "pytorch", augment, epochs=3)
    assert "in every training step" not in caplog.text  # too little work to pay for a translation
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(prefix_cache, "STREAM_MIN_ELEMENTS", 0)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        onnx = _probabilities(image_folder, tmp_path / "onnx", augment, epochs=3)
    assert "Frozen layers below blocks.2 run on onnxruntime in every training step" in caplog.text
    assert (onnx - pytorch).abs().max() < 1e-3
    assert (onnx - onnx.mean(0)).abs().max() > 1e-3  # the model tells the images apart: not a constant


def test_streamed_layers_stand_in_for_the_frozen_ones_only_inside_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(fast_inference, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(prefix_cache, "STREAM_MIN_ELEMENTS", 0)
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(3)
    config = TrainConfig(strategy="fine-tune", epochs=2)
    module = TransferModule(backbone, create_strategy(config), config, augment=random_d4)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    split = SplitImages(images, torch.zeros(6, dtype=torch.long), list(range(6)))
    expected = run_batched(module, module, images)
    with prefix_cache.streamed_prefix(module, {"train": split, "val": split}) as data:
        assert data["train"] is split  # the images stay: the frozen layers run in the step
        assert isinstance(module.normalize, prefix_cache.StreamedLayers)
        assert torch.allclose(run_batched(module, module, images), expected, atol=1e-4)
        # between its calls PyTorch trains: onnxruntime's threads must not spin on the same cores
        options = module.normalize.lower._onnx.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert isinstance(module.normalize, Normalize)
    assert not any("forward" in vars(layer) for layer in module.model.modules())  # no layer bypassed
    assert torch.equal(run_batched(module, module, images), expected)
