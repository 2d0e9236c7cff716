import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from transferkit.errors import RunError
from transferkit.files import write_atomic
from transferkit.training.callbacks import AtomicCheckpointIO, ResumePoints
from transferkit.training.data_order import SeededBatchSampler
from transferkit.training.module import adamw, warmup_cosine
from transferkit.transforms.augment import create_augmentation, d4_view, random_d4


def test_warmup_then_cosine_to_zero() -> None:
    factor = warmup_cosine(total_steps=100, warmup=10)
    assert factor(0) < factor(5) < factor(9) <= 1.0
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0)


def test_adamw_on_cpu_is_fused_and_updates_as_unfused_adamw_does() -> None:
    torch.manual_seed(0)
    plain = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    fused = [p.detach().clone().requires_grad_(True) for p in plain]
    start = [p.detach().clone() for p in plain]

    def groups(parameters: list[torch.Tensor]) -> list[dict[str, Any]]:
        top = {"params": parameters[1:], "lr": 1e-2, "weight_decay": 0}
        return [{"params": parameters[:1], "lr": 1e-3}, top]

    optimizers = [torch.optim.AdamW(groups(plain)), adamw(groups(fused))]
    assert optimizers[1].defaults["fused"] and not optimizers[0].defaults["fused"]
    for _ in range(10):
        gradients = [torch.randn_like(p) for p in plain]
        for parameters, optimizer in zip((plain, fused), optimizers, strict=True):
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.grad = gradient.clone()
            optimizer.step()
    for moved, same, before in zip(plain, fused, start, strict=True):
        assert (moved - before).abs().max() > 1e-3  # ten steps moved the weights
        assert (moved - same).abs().max() < 1e-6


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    write_atomic(tmp_path / "atomic.json", b"{}")
    (tmp_path / "plain.json").write_bytes(b"{}")
    assert (tmp_path / "atomic.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode


def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.ckpt"
    write_atomic(target, b"old checkpoint")

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new checkpoint")
    assert target.read_bytes() == b"old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoints_round_trip_through_the_atomic_writer(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"weights": torch.arange(3)}, tmp_path / "checkpoints" / "last.ckpt")
    loaded = io.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.equal(loaded["weights"], torch.arange(3))


class SavingTrainer(SimpleNamespace):
    """What ResumePoints needs of a Trainer: steps, a one-process strategy, and a save that is recorded."""

    strategy = SimpleNamespace(broadcast=lambda value, src: value)

    def save_checkpoint(self, path: Path) -> None:
        self.saved.append(self.global_step)


def test_resume_points_every_n_steps_and_at_the_end_but_not_at_every_short_epoch(tmp_path: Path) -> None:
    trainer: Any = SavingTrainer(global_step=0, accumulate_grad_batches=1, is_last_batch=False, saved=[])
    sampler = SeededBatchSampler(12, 3, 0, lambda: 0, drop_last=False)
    points = ResumePoints(tmp_path / "last.ckpt", every=4, sampler=sampler)
    for _ in range(3):  # 3 epochs of 3 steps, each epoch far shorter than the interval
        for batch in range(3):
            trainer.global_step += 1
            trainer.is_last_batch = batch == 2
            points.on_train_batch_end(trainer, None, None, None, batch)  # type: ignore[arg-type]
        points.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    points.on_train_end(trainer, None)  # type: ignore[arg-type]
    # step 4 is mid-epoch; step 8 is due on epoch 3's second batch; and the end (step 9)
    assert trainer.saved == [4, 8, 9]

    points.epoch_end_interval_s = 0.0  # epochs longer than the interval keep a resume point at each end
    trainer.saved.clear()
    points.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.saved == [9]


def test_a_step_checkpoint_due_on_an_epochs_last_batch_waits_for_the_epoch_end(tmp_path: Path) -> None:
    trainer: Any = SavingTrainer(global_step=0, accumulate_grad_batches=1, is_last_batch=False, saved=[])
    sampler = SeededBatchSampler(12, 3, 0, lambda: 0, drop_last=False)
    points = ResumePoints(tmp_path / "last.ckpt", every=3, sampler=sampler)
    for batch in range(3):
        trainer.global_step += 1
        trainer.is_last_batch = batch == 2
        points.on_train_batch_end(trainer, None, None, None, batch)  # type: ignore[arg-type]
    assert trainer.saved == []  # not from the last batch: Lightning would resume past the validation
    points.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.saved == [3]


def test_d4_reaches_all_eight_symmetries() -> None:
    torch.manual_seed(0)
    image = torch.arange(9, dtype=torch.uint8).reshape(1, 3, 3)
    seen = {tuple(random_d4(image).flatten().tolist()) for _ in range(400)}
    assert len(seen) == 8


def test_d4_test_time_views_are_the_eight_symmetries_it_trains_on() -> None:
    image = torch.arange(2 * 4 * 4, dtype=torch.uint8).reshape(1, 2, 4, 4)  # no symmetry of its own
    trained = {d4_view(image, index).numpy().tobytes() for index in range(8)}
    views = create_augmentation("d4", 4).tta_views
    assert {view(image.numpy()).tobytes() for view in views} == trained and len(views) == 8


@pytest.mark.parametrize("name", ["none", "crop", "light", "d4"])
def test_presets_keep_shape_and_dtype(name: str) -> None:
    preset = create_augmentation(name, 24)
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    out = preset.train(image) if preset.train else image
    assert out.shape == image.shape and out.dtype == torch.uint8
    batch = image[None].repeat(2, 1, 1, 1).numpy()  # test-time views run on numpy batches
    assert all(view(batch).shape == batch.shape for view in preset.tta_views)


def test_a_non_finite_loss_stops_training_naming_the_step(image_folder: Path, tmp_path: Path) -> None:
    import transferkit
    from transferkit.testing import tiny_fit_config

    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"train.lr": 1e30, "train.warmup_fraction": 0.0}
    )
    with pytest.raises(RunError, match=r"at step \d+ .*Lower train\.lr"):
        transferkit.fit(config)
    run_dir = next(tmp_path.iterdir())
    assert (run_dir / "metrics.csv").is_file()  # the head phase's history survives
