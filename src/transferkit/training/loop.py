"""Runs a strategy's phases: the head on cached features, then the Lightning epoch loop."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch.utils.data import DataLoader

from transferkit.data.cache import CachedImages, SplitImages
from transferkit.run_dir import RunPaths
from transferkit.training.callbacks import write_history
from transferkit.training.module import TransferModule
from transferkit.training.trainer import create_trainer
from transferkit.transforms.augment import AugmentPreset


def run_phases(
    module: TransferModule, data: dict[str, SplitImages], augment: AugmentPreset, paths: RunPaths
) -> list[dict[str, Any]]:
    """Trains `module` as its strategy says; returns the per-epoch history also written to metrics.csv."""
    strategy, config = module.strategy, module.config
    phases = strategy.phases()
    summary = strategy.prepare(module.backbone, module.normalize, data["train"], data["val"])
    history = [{"epoch": 0, "phase": phases[0].name, **summary}]
    write_history(paths.history, history)
    if strategy.train_epochs == 0:
        return history
    has_val = len(data["val"].labels) > 0
    trainer = create_trainer(
        config, paths, history=history, phase=phases[-1].name, epochs=strategy.train_epochs, has_val=has_val
    )
    train = CachedImages(data["train"].images, data["train"].labels.tolist(), augment.train)
    val = CachedImages(data["val"].images, data["val"].labels.tolist())
    loader = partial(DataLoader, num_workers=config.num_workers)
    trainer.fit(
        module,
        loader(train, batch_size=config.batch_size, shuffle=True, drop_last=len(train) > config.batch_size),
        loader(val, batch_size=config.batch_size * 2) if has_val else None,
    )
    return history
