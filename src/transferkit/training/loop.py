"""Runs a strategy's phases: the head on cached features, then the Lightning epoch loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from transferkit.data.cache import CachedImages, SplitImages
from transferkit.strategies.base import HeadData
from transferkit.training.callbacks import write_history
from transferkit.training.module import TransferModule
from transferkit.training.trainer import create_trainer
from transferkit.transforms.augment import AugmentPreset


def run_phases(
    module: TransferModule, data: dict[str, SplitImages], augment: AugmentPreset, run_dir: Path
) -> list[dict[str, Any]]:
    """Trains `module` as its strategy says; returns the per-epoch history also written to metrics.csv."""
    strategy, config = module.strategy, module.config
    head = HeadData(data["train"].images, data["train"].labels, data["val"].images, data["val"].labels)
    history = [{"epoch": 0, "phase": "head", **strategy.prepare(module.backbone, module.normalize, head)}]
    write_history(run_dir / "metrics.csv", history)
    if strategy.train_epochs == 0:
        return history
    phase = strategy.phases()[-1].name
    has_val = len(data["val"].labels) > 0
    trainer = create_trainer(
        config, run_dir, history=history, phase=phase, epochs=strategy.train_epochs, has_val=has_val
    )
    train = CachedImages(data["train"].images, data["train"].labels.tolist(), augment.train)
    val = CachedImages(data["val"].images, data["val"].labels.tolist())
    trainer.fit(
        module,
        DataLoader(
            train,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.num_workers,
            drop_last=len(train) > config.batch_size,
        ),
        DataLoader(val, batch_size=config.batch_size * 2, num_workers=config.num_workers)
        if has_val
        else None,
    )
    torch.set_grad_enabled(True)
    return history
