"""Runs a strategy's phases: the head on cached features, then the Lightning epoch loop.

A run resumes from the furthest point it reached: the weights training ended with, else the last
checkpoint (mid-epoch included), else the start.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from transferkit.config import RuntimeConfig
from transferkit.data.cache import CachedImages, SplitImages
from transferkit.data.splits import UNLABELED
from transferkit.faults import kill_point
from transferkit.files import write_atomic, write_json
from transferkit.run_dir import RunPaths
from transferkit.training.balance import sample_weights
from transferkit.training.callbacks import WeightAverage, write_history
from transferkit.training.data_order import SeededBatchSampler
from transferkit.training.interpolation import State, cloned
from transferkit.training.lr_range import RangeTest, lr_range_test
from transferkit.training.module import TransferModule
from transferkit.training.padding import explicit_padding
from transferkit.training.prefix_cache import cacheable, cached_prefix, streamed_prefix
from transferkit.training.semi.base import Teacher
from transferkit.training.trainer import create_trainer, quiet_lightning

RANGE_TEST_FILE = "lr_range_test.json"


@dataclass
class TrainingPlan:
    """What the epoch loop needs beyond the module: data, where to write, how to run and balance."""

    data: dict[str, SplitImages]
    paths: RunPaths
    runtime: RuntimeConfig
    balanced_sampling: bool = False
    class_counts: list[int] | None = None
    writes: bool = True  # False in the worker processes of a multi-process run
    teacher: Callable[[], Teacher] | None = None  # for a semi method that needs one: trains, predicts
    # False where best.ckpt would be removed unread (cross-validation folds, the teacher): it is
    # then written only when early stopping or a time budget may load it
    keeps_best: bool = True


@dataclass(frozen=True)
class TrainingResult:
    """What training found besides the weights: the per-epoch history (also in metrics.csv), the
    pseudo-label rounds, the learning-rate range test and the weights before fine-tuning, when the run
    had them."""

    history: list[dict[str, Any]]
    semi_summary: Any = None  # what the semi-supervised method did before training (pseudo-labels)
    range_test: RangeTest | None = None
    start: State | None = None  # the weights with the fitted head, before fine-tuning (for WiSE-FT)


def run_phases(module: TransferModule, plan: TrainingPlan, *, resume: bool = False) -> TrainingResult:
    """Trains `module` as its strategy says."""
    paths, strategy = plan.paths, module.strategy
    # a run that saved its pseudo-labels trains (or reads back) the very same ones
    teacher = {"teacher": plan.teacher} if module.semi.needs_teacher else {}  # others never take one
    plan.data, semi_summary = module.semi.pseudo_label(
        module.backbone, module.normalize, plan.data, paths.root, save=plan.writes, **teacher
    )
    if resume and paths.trained_weights.exists():
        module.model.load_state_dict(torch.load(paths.trained_weights, weights_only=True))
        return TrainingResult(read_history(paths), semi_summary, _saved_range_test(paths), _start(paths))
    history: list[dict[str, Any]] = []
    resuming = resume and paths.last_checkpoint.exists()
    keeps_start = strategy.fits_head_first and strategy.train_epochs > 0
    if not resuming:
        summary = strategy.prepare(module.backbone, module.normalize, plan.data["train"], plan.data["val"])
        history.append({"epoch": 0, "phase": strategy.phases()[0].name, **summary})
        if plan.writes:
            write_history(paths.history, history)
            if keeps_start:
                save_weights(module, paths.start_weights)
        kill_point("after-head")
    start = _start(paths) if resuming else cloned(module.model.state_dict()) if keeps_start else None
    range_test = None
    if strategy.train_epochs > 0:
        with explicit_padding(module.model):  # for the range test too
            range_test = train_epochs(module, plan, history, resuming)
    if plan.writes:
        save_weights(module, paths.trained_weights)
    return TrainingResult(history, semi_summary, range_test, start)


def _start(paths: RunPaths) -> State | None:
    """The weights a run saved after fitting its head, if its strategy fits one."""
    if not paths.start_weights.exists():
        return None
    state: State = torch.load(paths.start_weights, weights_only=True)
    return state


def _saved_range_test(paths: RunPaths) -> RangeTest | None:
    """The range test a run saved, so that a resumed run trains at the same rate."""
    path = paths.root / RANGE_TEST_FILE
    return RangeTest.from_dict(json.loads(path.read_text())) if path.exists() else None


def train_epochs(
    module: TransferModule, plan: TrainingPlan, history: list[dict[str, Any]], resuming: bool
) -> RangeTest | None:
    """The Lightning epoch loop; returns the range test when the rate was found by one (--lr auto)."""
    config = module.config
    range_test = None
    if math.isnan(module.strategy.lr):  # --lr auto
        range_test = automatic_rate(module, plan.data["train"], plan.paths, save=plan.writes)
        module.strategy = module.strategy.with_rate(range_test.suggestion)
    if module.semi.needs_pool:
        module.semi.attach(plan.data[UNLABELED], module.augment, module.num_classes)
    # Several processes: DDP registers what requires gradients when it wraps the model, so everything
    # that trains in some epoch must require them now; what is frozen in a given epoch is "unused".
    ever_trained = {id(p) for group in module.strategy.param_groups(module.backbone) for p in group["params"]}
    for param in module.model.parameters():
        param.requires_grad_(id(param) in ever_trained)
    # Mixing blends network inputs: on activations of the frozen layers it would blend something else.
    apart = module.mix is None and not module.semi.trains_on_pool_each_step  # frozen layers may run apart
    labels = plan.data["train"].labels
    sampler = SeededBatchSampler(
        len(labels),
        config.batch_size,
        module.seed,
        epoch_of=lambda: trainer.current_epoch,
        drop_last=len(labels) > config.batch_size,
        weights=sample_weights(labels, plan.class_counts or []) if plan.balanced_sampling else None,
    )
    # one process: the cache plans the views its batches will draw (with several, shards differ)
    one_process = plan.runtime.devices == 1 and plan.runtime.num_nodes == 1
    prefix: contextlib.AbstractContextManager[dict[str, SplitImages]] = contextlib.nullcontext(plan.data)
    if apart:  # cached once where the augmentation allows, else run on onnxruntime in each step
        frozen_layers = cached_prefix if cacheable(module.augment) else streamed_prefix
        prefix = frozen_layers(module, plan.data, sampler if one_process else None)
    with prefix as data, quiet_lightning():
        train, val = data["train"], data["val"]
        has_val = len(val.labels) > 0
        trainer = create_trainer(
            config,
            plan.runtime,
            plan.paths,
            history=history,
            phase=module.strategy.phases()[-1].name,
            epochs=module.strategy.train_epochs,
            has_val=has_val,
            sampler=sampler,
            keeps_best=plan.keeps_best,
        )
        # with an auxiliary head, each image's label is a row: the task's class, then the other label's
        targets = (
            list(module.auxiliary.training_targets(train)) if module.auxiliary else train.labels.tolist()
        )
        train_loader = DataLoader(
            CachedImages(train.images, targets),
            batch_sampler=sampler,
            num_workers=plan.runtime.num_workers,
        )
        val_loader = DataLoader(
            CachedImages(val.images, val.labels.tolist()),
            batch_size=config.batch_size * 2,
            num_workers=plan.runtime.num_workers,
        )
        trainer.fit(
            module,
            train_loader,
            val_loader if has_val else None,
            ckpt_path=plan.paths.last_checkpoint if resuming else None,
        )
        keep_final_weights(module, trainer, plan.paths)
    return range_test


def keep_final_weights(module: TransferModule, trainer: Any, paths: RunPaths) -> None:
    """The best checkpoint when training stopped early, else the weight average when one was kept."""
    stopped_early = trainer.current_epoch < module.strategy.train_epochs
    if stopped_early and paths.best_checkpoint.exists():
        load_checkpoint_weights(module, paths.best_checkpoint)
        return
    for callback in trainer.callbacks:
        if isinstance(callback, WeightAverage) and callback.average is not None:
            module.model.load_state_dict(callback.average, strict=False)


def automatic_rate(module: TransferModule, train: SplitImages, paths: RunPaths, *, save: bool) -> RangeTest:
    """The range test, run once per run directory (a resumed run reads it back)."""
    saved = _saved_range_test(paths)
    if saved is not None:
        return saved
    generator = torch.Generator().manual_seed(module.seed)
    images = CachedImages(train.images, train.labels.tolist())
    loader = DataLoader(images, batch_size=module.config.batch_size, shuffle=True, generator=generator)
    result = lr_range_test(module, loader)
    if save:
        write_json(paths.root / RANGE_TEST_FILE, result.to_dict())
    return result


def load_checkpoint_weights(module: TransferModule, path: Any) -> None:
    """The model weights of a Lightning checkpoint, averaged ones when it kept an average."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    average = checkpoint.get("callbacks", {}).get(WeightAverage.__qualname__, {}).get("average")
    if average is not None:
        module.model.load_state_dict(average, strict=False)


def save_weights(module: TransferModule, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(module.model.state_dict(), buffer)
    write_atomic(path, buffer.getvalue())


def read_history(paths: RunPaths) -> list[dict[str, Any]]:
    with paths.history.open(newline="") as stream:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(stream)]


def _value(text: str) -> Any:
    try:
        return float(text) if text else None
    except ValueError:
        return text
