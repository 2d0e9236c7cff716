"""The Lightning Trainer, configured once for every strategy."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer

from transferkit.config import RuntimeConfig, TrainConfig
from transferkit.run_dir import RunPaths
from transferkit.training.callbacks import (
    AtomicCheckpointIO,
    EpochHistory,
    ResumePoints,
    StopOnSignal,
    WeightAverage,
    progress_bar,
)
from transferkit.training.data_order import SeededBatchSampler


def create_trainer(
    config: TrainConfig,
    runtime: RuntimeConfig,
    paths: RunPaths,
    *,
    history: list[dict[str, Any]],
    phase: str,
    epochs: int,
    has_val: bool,
    sampler: SeededBatchSampler,
    keeps_best: bool = True,
) -> L.Trainer:
    """A Trainer that writes `metrics.csv` and `checkpoints/{best,last}.ckpt` into the run directory
    (best.ckpt without `keeps_best` only when training may stop early and load it)."""
    # Order matters: whatever changes the state of a step (the weight average) runs before the
    # callbacks that save it, and stopping callbacks run last.
    callbacks: list[L.Callback] = [WeightAverage(config.ema_decay)] if config.ema else []
    callbacks += [
        EpochHistory(paths.history, history, phase),
        progress_bar(phase),
        ResumePoints(paths.last_checkpoint, runtime.checkpoint_every, sampler),
        StopOnSignal(paths.last_checkpoint, paths.root),
    ]
    # without a ModelCheckpoint of ours, Lightning would add its own: checkpointing is off then
    writes_best = has_val and bool(keeps_best or config.early_stopping or config.time_budget)
    if writes_best:
        callbacks.append(
            ModelCheckpoint(
                dirpath=paths.checkpoints,
                filename="best",
                monitor="val_accuracy",
                mode="max",
                enable_version_counter=False,
            )
        )
    if config.early_stopping and has_val:
        callbacks.append(EarlyStopping("val_accuracy", patience=config.early_stopping, mode="max"))
    if config.time_budget:
        callbacks.append(Timer(dt.timedelta(minutes=config.time_budget), interval="step", verbose=False))
    distributed = runtime.devices > 1 or runtime.num_nodes > 1
    return L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=runtime.devices,
        num_nodes=runtime.num_nodes,
        strategy=distributed_strategy(runtime) if distributed else "auto",
        precision=runtime.precision,
        accumulate_grad_batches=config.accumulate,
        deterministic=runtime.deterministic or None,
        logger=False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_checkpointing=writes_best,
        default_root_dir=paths.root,
        limit_val_batches=None if has_val else 0,
        use_distributed_sampler=False,  # the seeded batch sampler shards the data itself
    )


def distributed_strategy(runtime: RuntimeConfig) -> str:
    """Lightning's strategy name: frozen layer groups (and gradual unfreezing) leave parameters unused."""
    return "ddp_find_unused_parameters_true" if runtime.distributed == "ddp" else runtime.distributed


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Our progress bar and summary say what matters; Lightning's start-up notices and tips do not.

    Only while a Trainer runs: the loggers' levels and the warning filters are restored afterwards.
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # checkpoints/ holds the head's weights (start.pt) before best.ckpt joins them, on purpose
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        # the final model of a cross-validated run trains on every train image: there is no validation
        warnings.filterwarnings("ignore", message=".*validation_step` but have no `val_dataloader.*")
        # frozen BatchNorm layers stay in eval mode on purpose (keep_batchnorm_statistics)
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
