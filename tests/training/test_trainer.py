"""The Trainer's checkpoints: best.ckpt only where something may read it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from transferkit.config import RuntimeConfig, TrainConfig
from transferkit.run_dir import RunPaths
from transferkit.training.data_order import SeededBatchSampler
from transferkit.training.trainer import create_trainer


@pytest.mark.parametrize(
    ("keep_best", "overrides", "expected"),
    [
        (True, {}, True),  # a run's own training keeps best.ckpt for its users
        (False, {}, False),  # a fold's would be removed unread
        (False, {"early_stopping": 2}, True),  # stopping early loads it
        (False, {"time_budget": 1.0}, True),
    ],
)
def test_best_checkpoint_only_where_it_may_be_read(
    tmp_path: Path, keep_best: bool, overrides: dict[str, float], expected: bool
) -> None:
    trainer = create_trainer(
        TrainConfig(**overrides),
        RuntimeConfig(),
        RunPaths(tmp_path),
        history=[],
        phase="fine-tune",
        epochs=1,
        has_val=True,
        sampler=SeededBatchSampler(8, 4, 0, lambda: 0, drop_last=False),
        keeps_best=keep_best,
    )
    kept = [callback for callback in trainer.callbacks if isinstance(callback, ModelCheckpoint)]
    assert len(kept) == int(expected)  # and no default one of Lightning's when ours is absent
    if kept:
        assert Path(kept[0].dirpath or "") == RunPaths(tmp_path).checkpoints
