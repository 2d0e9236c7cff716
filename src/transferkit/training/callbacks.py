"""Callbacks: the per-epoch history file, the phase-aware progress bar, atomic checkpoint writes."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import RichProgressBar

from transferkit.files import write_atomic

HISTORY_FIELDS = ("epoch", "phase", "train_loss", "val_loss", "val_accuracy", "lr", "seconds")


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


class EpochHistory(L.Callback):
    """Appends one row per epoch to `metrics.csv`: losses, validation accuracy, top learning rate, time."""

    def __init__(self, path: Path, rows: list[dict[str, Any]], phase: str) -> None:
        self.path = path
        self.rows = rows
        self.phase = phase
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": len(self.rows),
                "phase": self.phase,
                "train_loss": _number(metrics.get("train_loss")),
                "val_loss": _number(metrics.get("val_loss")),
                "val_accuracy": _number(metrics.get("val_accuracy")),
                "lr": trainer.optimizers[0].param_groups[-1]["lr"],
                "seconds": round(time.perf_counter() - self._started, 2),
            }
        )
        if trainer.is_global_zero:
            write_history(self.path, self.rows)


def _number(value: torch.Tensor | None) -> float | None:
    return None if value is None else round(float(value), 6)


class PhaseProgressBar(RichProgressBar):
    """Lightning's rich bar, with the strategy phase in front of the epoch count."""

    def __init__(self, phase: str) -> None:
        super().__init__(leave=True)
        self.phase = phase

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs
        return f"{self.phase} · epoch {current_epoch + 1}/{total}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary file first, then replace the old one in a single rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())
