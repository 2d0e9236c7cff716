"""The Lightning Trainer, configured once for every strategy."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from transferkit.config import TrainConfig
from transferkit.run_dir import RunPaths
from transferkit.training.callbacks import AtomicCheckpointIO, EpochHistory, PhaseProgressBar


def create_trainer(
    config: TrainConfig,
    paths: RunPaths,
    *,
    history: list[dict[str, Any]],
    phase: str,
    epochs: int,
    has_val: bool,
) -> L.Trainer:
    """A Trainer that writes `metrics.csv` and `checkpoints/{best,last}.ckpt` into the run directory."""
    checkpoint = ModelCheckpoint(
        dirpath=paths.checkpoints,
        filename="best",
        monitor="val_accuracy" if has_val else None,
        mode="max",
        save_last=True,
        enable_version_counter=False,
    )
    return L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=config.devices,
        precision=config.precision,  # type: ignore[arg-type]
        logger=False,
        callbacks=[checkpoint, EpochHistory(paths.history, history, phase), PhaseProgressBar(phase)],
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=paths.root,
        limit_val_batches=None if has_val else 0,
    )


def quiet_lightning() -> None:
    """Our progress bar and summary say what matters; Lightning's start-up notices and tips do not."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


quiet_lightning()
