"""Callbacks: history, progress, resume checkpoints, signals, weight averaging, atomic writes."""

from __future__ import annotations

import csv
import io
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from transferkit.errors import TrainingInterrupted
from transferkit.faults import kill_point
from transferkit.files import write_atomic
from transferkit.progress import interactive
from transferkit.training.data_order import SeededBatchSampler

HISTORY_FIELDS = (
    "epoch",
    "phase",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "pseudo_labels",  # semi-supervised: pool images that got a target this epoch
    "pseudo_label_accuracy",  # of those whose true label is known (hidden by a label budget)
    "aux_loss",  # an auxiliary head's weighted loss (data.aux_label)
)


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

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows[:] = state_dict["rows"]  # rows written after the checkpoint are redone by the resumed run

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
                **_pool_figures(metrics),
                **({"aux_loss": _number(metrics["aux_loss"])} if "aux_loss" in metrics else {}),
            }
        )
        if trainer.is_global_zero:
            write_history(self.path, self.rows)


def _pool_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """FixMatch's pseudo-labels this epoch: how many, and how many right where the truth is known."""
    if "pool_used" not in metrics:
        return {}
    known = float(metrics["pool_known"])
    accuracy = float(metrics["pool_correct"]) / known if known else None
    return {"pseudo_labels": int(metrics["pool_used"]), "pseudo_label_accuracy": accuracy}


def _number(value: torch.Tensor | None) -> float | None:
    return None if value is None else round(float(value), 6)


def progress_bar(phase: str) -> ProgressBar:
    """Rich's redrawn bar where stderr is a terminal or a notebook; elsewhere (a log file, CI) one line
    per epoch, which a redrawn bar would turn into several lines of columns."""
    return PhaseProgressBar(phase) if interactive() else EpochLines(phase)


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


class EpochLines(ProgressBar):
    """One line on stderr per epoch: ``fine-tune · epoch 2/7: 4 batches in 1.2 s, loss 0.690,
    val_accuracy 0.562``."""

    def __init__(self, phase: str) -> None:
        super().__init__()
        self.phase = phase
        self._enabled = True
        self._started = time.perf_counter()

    def disable(self) -> None:  # Lightning disables the bar on every process but the first
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        seconds = time.perf_counter() - self._started
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        shown = "".join(f", {name} {_shown(value)}" for name, value in metrics.items())
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        counted = f"{batches} batch" + ("" if batches == 1 else "es")
        print(f"{self.phase} · {epoch}: {counted} in {seconds:.1f} s{shown}", file=sys.stderr, flush=True)


def _shown(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary file first, then replace the old one in a single rename.

    Loading uses ``weights_only=True``: a checkpoint holds tensors and plain values, never code.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> Any:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class ResumePoints(L.Callback):
    """Writes `last.ckpt` every `every` optimizer steps, at an epoch end when the last one is at least
    `epoch_end_interval_s` old, and when training ends, with the position in the epoch's batch order; on
    resume, the sampler skips the batches already trained on.

    A checkpoint costs about 0.2 s (model and optimizer state, written atomically): on few-label data,
    where an epoch takes a second, one at every epoch end would take a fifth of the training time. A
    step checkpoint due on an epoch's last batch is written at the epoch's end instead, after its
    validation: Lightning resumes from a checkpoint of the last batch as from a finished epoch.
    """

    def __init__(
        self, path: Path, every: int, sampler: SeededBatchSampler, epoch_end_interval_s: float = 60.0
    ) -> None:
        self.path = path
        self.every = every
        self.sampler = sampler
        self.epoch_end_interval_s = epoch_end_interval_s
        self._saved_at = time.monotonic()
        self._deferred = False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        kill_point(f"step:{trainer.global_step}")
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if stepped and trainer.global_step % self.every == 0:
            if trainer.is_last_batch:
                self._deferred = True
            else:
                self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = self._deferred or time.monotonic() - self._saved_at >= self.epoch_end_interval_s
        # every process saves or none does (saving ends at a barrier): process 0's clock decides
        if trainer.strategy.broadcast(due, src=0):
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_at = time.monotonic()
        self._deferred = False

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        done = progress.processed  # type: ignore[attr-defined]  # a _ProcessedTracker at run time
        checkpoint["data_order"] = {"epoch": trainer.current_epoch, "batches_done": done}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        order = checkpoint.get("data_order")
        if order:
            self.sampler.resume(order["epoch"], order["batches_done"])


class StopOnSignal(L.Callback):
    """SIGTERM or Ctrl-C finish the current step, save `last.ckpt` and stop with `TrainingInterrupted`.

    A second signal interrupts at once.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, path: Path, run_dir: Path) -> None:
        self.path = path
        self.run_dir = run_dir
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore()
            signal.raise_signal(number)
        self.received = number

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size == 1:  # across processes, Lightning's own SIGTERM handling applies
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.received is not None:
            trainer.save_checkpoint(self.path)
            raise TrainingInterrupted(self.received, str(self.run_dir))

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


class WeightAverage(L.Callback):
    """An exponential moving average of the weights: validated each epoch and kept at the end.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the average does not
    hold on to the first, barely trained weights on short runs.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.average: dict[str, torch.Tensor] | None = None
        self._training: dict[str, torch.Tensor] | None = None
        self._last_step = -1

    def _weights(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in _model(pl_module).state_dict().items() if v.is_floating_point()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in self._weights(pl_module).items()}

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_step or self.average is None:
            return  # no optimizer step yet (gradient accumulation)
        self._last_step = trainer.global_step
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in self._weights(pl_module).items():
            self.average[name].lerp_(value.detach().to(self.average[name].device), 1 - decay)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.average is not None:
            self._training = {k: v.detach().clone() for k, v in self._weights(pl_module).items()}
            _model(pl_module).load_state_dict(self.average, strict=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training is not None:
            _model(pl_module).load_state_dict(self._training, strict=False)
            self._training = None

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average = state_dict["average"]
        self.updates = state_dict["updates"]


def _model(pl_module: L.LightningModule) -> torch.nn.Module:
    model = pl_module.model
    assert isinstance(model, torch.nn.Module)
    return model
