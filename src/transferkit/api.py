"""`fit`: the five steps of transfer learning, in order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from transferkit.config import FitConfig, resolve_config
from transferkit.data import class_counts, decode_splits, make_splits, resolve_data
from transferkit.evaluation import headline_metrics
from transferkit.evaluation.run_outputs import evaluate_test, write_run_outputs
from transferkit.models import resolve_model
from transferkit.run_dir import RunPaths, build_manifest, write_json
from transferkit.strategies import create_strategy
from transferkit.training.callbacks import write_atomic
from transferkit.training.loop import run_phases
from transferkit.training.module import TransferModule
from transferkit.transforms import augment_presets, create_augmentation


@dataclass(frozen=True)
class Run:
    """A finished run: its directory, resolved config and test metrics."""

    paths: RunPaths
    config: FitConfig
    metrics: dict[str, Any]
    wall_time_s: float

    @property
    def dir(self) -> Path:
        return self.paths.root

    @property
    def headline(self) -> dict[str, float]:
        return headline_metrics(self.metrics)


def fit(config: FitConfig | str | Path | None = None, **options: Any) -> Run:
    """Fine-tunes a pretrained model on a dataset, evaluates it on the test split and exports it.

    Args:
        config: a FitConfig, a YAML file, or None for the defaults (EfficientNet-Lite0 on ELPV).
        **options: shortcuts such as ``data="digits"``, ``epochs=3``, or dotted keys such as
            ``**{"train.lr": 3e-4}``.

    Returns:
        The finished Run, with metrics and paths of everything written.
    """
    started = time.perf_counter()
    config = resolve_config(config, **options)
    strategy = create_strategy(config.train)  # unknown names fail here, before any work
    source = resolve_data(config.data.name)
    augment_name = source.augment if config.preprocess.augment == "auto" else config.preprocess.augment
    augment_presets.get(augment_name)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # 1. the pretrained model
    backbone = resolve_model(config.model.name, config.model.pretrained)
    # 2. the new dataset, split
    splits = make_splits(source, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    backbone.reset_head(len(source.class_names))
    paths = RunPaths.create(config.out, config.data.name, config.model.name)
    write_atomic(paths.config, config.to_yaml().encode())
    data_files = [record.path for record in source.records]
    write_json(paths.manifest, build_manifest(config.seed, data_files, backbone.weights_sha256))
    # 3. preprocessing: the size and normalization the weights expect, plus augmentation
    if config.preprocess.image_size:
        backbone.preprocessing = backbone.preprocessing.resized(config.preprocess.image_size)
    image_size = backbone.preprocessing.image_size
    augment = create_augmentation(augment_name, image_size)
    data = decode_splits(source, splits, image_size, backbone.preprocessing.interpolation)
    # 4. fine-tuning
    module = TransferModule(backbone, strategy, config.train)
    history = run_phases(module, data, augment, paths.root)
    # 5. evaluation on the held-out test split, report and export
    views = augment.tta_views if config.preprocess.tta else augment.tta_views[:1]
    evaluation = evaluate_test(module, source, data["test"], views)
    wall_time = time.perf_counter() - started
    counts = class_counts(source, splits)
    write_run_outputs(
        paths, config, evaluation, module=module, history=history, counts=counts, wall_time_s=wall_time
    )
    return Run(paths, config, evaluation.metrics, wall_time)
