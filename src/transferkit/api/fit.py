"""`fit`: the five steps of transfer learning, in order."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L

from transferkit.api.auxiliary import fit_auxiliary_task
from transferkit.api.cross_validation import CrossValidation, cross_validate, joined, resolve_folds, subset
from transferkit.api.model_choice import ModelChoice, choose_start
from transferkit.api.outputs import evaluate_test, write_run_outputs
from transferkit.api.recipe import Recipe, build_backbone, with_auxiliary
from transferkit.config import DataConfig, FitConfig, resolve_config
from transferkit.data import (
    ImageSource,
    class_counts,
    decode_splits,
    fingerprint,
)
from transferkit.data.cache import DiskCache, SplitImages
from transferkit.data.checks import CheckCache, DataReport, check_data
from transferkit.data.class_map import natural_order, with_class_order
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.splits import Splits
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation import headline_metrics
from transferkit.evaluation.calibration import CalibrationSet
from transferkit.evaluation.operating_point import RecallTarget, resolve_recall_target
from transferkit.faults import kill_point
from transferkit.files import write_atomic, write_json
from transferkit.models import Backbone
from transferkit.progress import Laps
from transferkit.run_dir import RUN_DIR_ENV, RunPaths, build_manifest
from transferkit.training.interpolation import WeightChoice
from transferkit.training.loop import TrainingResult
from transferkit.training.methods import create_methods, with_resolved_methods
from transferkit.training.semi import PoolCheck, SemiMethod
from transferkit.transforms import augment_presets, create_augmentation

logger = logging.getLogger(__name__)


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


def fit(
    config: FitConfig | str | Path | None = None,
    *,
    preset: str | None = None,
    resume: str | Path | None = None,
    **options: Any,
) -> Run:
    """Fine-tunes a pretrained model on a dataset, evaluates it on the test split and exports it.

    Args:
        config: a FitConfig, a YAML file, or None for the defaults (EfficientNet-Lite0 on ELPV).
        preset: a named recipe in place of the defaults: ``"best"`` (see `transferkit.config.PRESETS`);
            a YAML file's keys and `options` override it.
        resume: a run directory of an interrupted run: it continues from its last checkpoint with its
            own config.yaml, and ends with the weights an uninterrupted run would have.
        **options: shortcuts such as ``data="digits"``, ``epochs=3``, or dotted keys such as
            ``**{"train.lr": 3e-4}``.

    Returns:
        The finished Run, with metrics and paths of everything written.
    """
    started = time.perf_counter()
    paths: RunPaths | None = None
    if resume is not None:
        if config is not None or preset is not None or options:
            raise ConfigError("A resumed run keeps its own config.yaml; pass --resume RUN_DIR alone.")
        paths = RunPaths.existing(resume)
        config = FitConfig.of_run(paths.config)
    else:
        config = with_batchnorm_for_random_init(resolve_config(config, preset=preset, **options))
    shared = os.environ.get(RUN_DIR_ENV)
    if not is_main_process():  # a worker process of a multi-process run writes nothing of its own
        if not shared:
            raise ConfigError(
                f"This process has a rank but no run directory: under torchrun or SLURM, set {RUN_DIR_ENV} "
                "to the same new folder in every process."
            )
        paths = RunPaths(Path(shared))
    elif shared and paths is None:
        paths = RunPaths.at(shared)
    return _fit(config, paths, started, resume=resume is not None)


@dataclass(frozen=True)
class Prepared:
    """Steps 1 and 2 done, before anything is decoded or trained: the recipe (with the crop and the
    source it settled on), its pretrained network, the checked splits, and the run directory."""

    recipe: Recipe
    backbone: Backbone
    splits: Splits
    checks: DataReport
    folds: int | None
    paths: RunPaths
    recall_target: RecallTarget | None
    model_choice: ModelChoice | None


def prepare(config: FitConfig, paths: RunPaths | None, laps: Laps, *, resume: bool) -> Prepared:
    """The model, the data and the run directory, every option checked; `laps` gets the time taken."""
    # Every name and method option is checked before any work: a typo must not cost a model load.
    methods = create_methods(config)
    config = with_resolved_methods(config, methods)
    config, source = ordinal_classes(config, load_source(config.data))
    recall_target = resolve_recall_target(config.decision.recall(), source.class_names)
    source, auxiliary = with_auxiliary(config, source, methods)
    laps.lap("data")
    # with several candidate models, the best-scoring one starts (a resumed run reads its choice back)
    config, model_choice = (config, resumed_choice(paths)) if resume else choose_start(config)
    if model_choice is not None and not resume:
        laps.lap("model_choice")
    augment_name = resolve_augment_name(config.preprocess.augment, source)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # 1. the pretrained model, with a new head, at the input size it is trained at
    backbone = build_backbone(config, source, methods.strategy)
    augment = create_augmentation(augment_name, backbone.preprocessing.image_size)
    laps.lap("model")
    # 2. the new dataset, split, with its label budget; unreadable files found before any training
    splits = split_with_budget(source, config.data)
    source = with_budget_note(source, splits, config.data)
    checks = check_data(source, splits, CheckCache.default() if config.data.cache else None)
    splits = check_unlabeled_pool(
        checks, leave_out_bad_images(checks, splits, config.data.bad_images), methods.semi
    )
    config, source = with_chosen_crop(config, source, backbone, checks)
    recipe = Recipe(config, methods, source, augment, auxiliary)
    folds = resolve_folds(recipe, splits, recall_target)
    paths = start_run_directory(config, source, backbone, paths)
    if model_choice is not None and not resume and is_main_process():
        write_json(paths.model_choice, model_choice.to_dict())
    laps.lap("data")
    return Prepared(recipe, backbone, splits, checks, folds, paths, recall_target, model_choice)


def _fit(config: FitConfig, paths: RunPaths | None, started: float, *, resume: bool) -> Run:
    laps = Laps(started)  # where the time went, for metrics.json and the report
    prepared = prepare(config, paths, laps, resume=resume)
    recipe, backbone, splits, paths = prepared.recipe, prepared.backbone, prepared.splits, prepared.paths
    config, source, methods = recipe.config, recipe.source, recipe.methods
    with paths.lock() if is_main_process() else contextlib.nullcontext(), sharing_run_dir(paths):
        # 3. preprocessing: the size, crop and normalization the weights expect, decoded once
        cache = DiskCache.default() if config.data.cache else None
        data = decode_splits(source, splits, backbone.preprocessing, cache, unlabeled=methods.semi.needs_pool)
        laps.lap("decoding")
        # 4. fine-tuning: with cross-validation, one model per fold first, then one on every train image
        #    (or the ensemble of the fold models)
        cv = cross_validate(recipe, data, prepared.folds, paths, resume=resume) if prepared.folds else None
        if cv is not None:
            laps.lap("cross_validation")
            data = {**data, "train": joined(data["train"], data["val"]), "val": subset(data["val"], [])}
            splits = replace(splits, train=[*splits.train, *splits.val], val=[])
            recipe, cv = checked_out_of_fold(recipe, cv)
            recipe = without_discarded_fine_tuning(recipe, cv)
            note_final_model(recipe, cv, len(splits.train))
        final = final_model(recipe, backbone, data, paths, cv, resume=resume)
        backbone, training, choice, held_out, pool_check = final
        laps.lap("final_model")
        source = with_note(source, pool_check.note() if pool_check is not None else None)
        source = with_note(source, recipe.methods.semi.note(training.history, training.semi_summary))
        if not is_main_process():
            return Run(paths, config, {}, time.perf_counter() - started)
        # 5. evaluation on the held-out test split, calibrated on validation or out-of-fold predictions
        #    (the chosen candidate's logits)
        kill_point("evaluation")
        classifier = recipe.classifier(backbone)
        evaluation = evaluate_test(
            classifier,
            source,
            data["test"],
            held_out,
            prepared.recall_target,
        )
        laps.lap("test")
        other = fit_auxiliary_task(recipe, backbone, data, paths)  # the other label's classifier
        if other is not None:
            laps.lap("other_label")
        wall_time = time.perf_counter() - started
        write_run_outputs(
            paths,
            config,
            evaluation,
            backbone=backbone,
            phases=recipe.methods.strategy.phases(),
            training=training,
            counts=class_counts(source, splits),
            wall_time_s=wall_time,
            timings_s=laps.seconds,
            data_checks=prepared.checks,
            cross_validation=cv,
            weight_choice=choice,
            pool_check=pool_check,
            model_choice=prepared.model_choice,
            auxiliary=other.record if other else None,
            other_tasks=[other.task] if other else [],
        )
    return Run(paths, config, evaluation.metrics, wall_time)


def checked_out_of_fold(recipe: Recipe, cv: CrossValidation) -> tuple[Recipe, CrossValidation]:
    """The final model's recipe and out-of-fold predictions: where the pool did not help out of fold, the
    recipe without it and its teachers' predictions; else a self-training model takes its pseudo-labels
    from the fold teachers, each measured on the images its fold held out."""
    if cv.pool is not None and not cv.pool.used:
        return recipe.without_pool(), cv.without_pool()
    return replace(recipe, teachers=cv.fold_teachers), cv


def final_model(
    recipe: Recipe,
    backbone: Backbone,
    data: dict[str, SplitImages],
    paths: RunPaths,
    cv: CrossValidation | None,
    *,
    resume: bool,
) -> tuple[Backbone, TrainingResult, WeightChoice | None, CalibrationSet, PoolCheck | None]:
    """The run's final network: the ensemble of the fold models, or `backbone` trained on the train split
    at the WiSE-FT candidate chosen on validation (or out of fold); with its training, the choice, the
    chosen candidate's held-out view logits to calibrate on, and where a teacher trained, whether the
    pool helped (out of fold, else on validation: where it did not, a gated run ends as its teacher)."""
    if cv is not None and cv.members:
        return cv.ensemble(), cv.last_training, cv.choice, cv.held_out, cv.pool
    training = recipe.train(backbone, data, paths, resume=resume, writes=is_main_process())
    if cv is not None:
        choice, held_out, check = cv.choice, cv.held_out, cv.pool
    else:
        training, choice, held_out, check = checked_on_validation(recipe, backbone, training, data, paths)
    recipe.finish(backbone, training, choice.alpha if choice else 1.0)
    return backbone, training, choice, held_out, check


def without_discarded_fine_tuning(recipe: Recipe, cv: CrossValidation) -> Recipe:
    """The recipe of the final network: without fine-tuning epochs where `discards_fine_tuning`."""
    return recipe.head_only() if discards_fine_tuning(recipe, cv) else recipe


def discards_fine_tuning(recipe: Recipe, cv: CrossValidation) -> bool:
    """Whether the folds chose WiSE-FT's α 0, the fitted head alone, so that the final network's
    fine-tuning would be discarded. (A semi-supervised run's pool may change what its head is fitted on,
    and an ensemble is its fold models: they keep the recipe.)"""
    choice = cv.choice
    return choice is not None and choice.alpha == 0 and not cv.members and recipe.methods.semi.name == "none"


def note_final_model(recipe: Recipe, cv: CrossValidation, train_images: int) -> None:
    """Says, between the folds' epochs and the final model's, what the folds chose and what trains next."""
    choice = cv.choice
    final = f"the final model trains on all {train_images} train images"
    if cv.members:
        logger.info("The final model is the ensemble of the %d fold models.", len(cv.members))
    elif discards_fine_tuning(recipe, cv):
        logger.info("Out of fold the head on frozen features predicted best: the final model is that head.")
    elif choice is None:
        logger.info("%s.", final.capitalize())
    else:
        accuracy = choice.accuracy[choice.alphas.index(choice.alpha)]
        kind = "balanced accuracy" if choice.balanced else "accuracy"
        best = f"WiSE-FT α {choice.alpha:g} predicted best ({100 * accuracy:.1f} % {kind})"
        logger.info("Out of fold, %s: %s.", best, final)


def checked_on_validation(
    recipe: Recipe,
    backbone: Backbone,
    training: TrainingResult,
    data: dict[str, SplitImages],
    paths: RunPaths,
) -> tuple[TrainingResult, WeightChoice | None, CalibrationSet, PoolCheck | None]:
    """The WiSE-FT candidate chosen on validation, and its validation logits; where a teacher trained,
    it is set against the model that learned from the pool on the same images, and where the pool did
    not help a gated run, `backbone` gets the teacher's trained weights (read back from its directory)
    and its training, choice and logits are returned instead."""
    choice, held_out = recipe.choose_on_validation(backbone, training, data)
    teacher = recipe.methods.semi.teacher_logits(training.semi_summary)
    if teacher is None or not len(held_out.labels) or not is_main_process():
        return training, choice, held_out, None
    taught_choice, taught = recipe.choose(list(teacher), data)
    gated = recipe.methods.semi.gated
    check = PoolCheck(taught.accuracy(), held_out.accuracy(), len(taught.labels), "on validation", gated)
    if check.used:
        return training, choice, held_out, check
    alone = recipe.without_pool()
    training = alone.train(backbone, data, paths.teacher(), resume=True, keeps_best=False)
    return training, taught_choice, taught, check


def resumed_choice(paths: RunPaths | None) -> ModelChoice | None:
    """The start model choice a resumed run made when it began (its config.yaml names the start)."""
    if paths is None or not paths.model_choice.exists():
        return None
    return ModelChoice.from_dict(json.loads(paths.model_choice.read_text()))


def ordinal_classes(config: FitConfig, source: ImageSource) -> tuple[FitConfig, ImageSource]:
    """An ordinal run's classes, lowest first: data.class_order, the source's own order (ELPV's), or
    their names in natural order (grade_2 before grade_10), which the run's config then records, so that
    `evaluate` and `--resume` rebuild the same classes and splits."""
    if config.train.task != "ordinal":
        return config, source
    if not source.ordered:
        order = natural_order(source.class_names)
        config = config.with_overrides({"data.class_order": order})
        source = with_class_order(source, order)
    logger.info("Ordinal classes, lowest first: %s (data.class_order sets their order).", source.class_names)
    return config, source


def with_batchnorm_for_random_init(config: FitConfig) -> FitConfig:
    """A randomly initialised network has no pretrained BatchNorm statistics worth keeping: they adapt."""
    if config.model.pretrained or config.train.batchnorm != "frozen":
        return config
    logger.info("model.pretrained is false: BatchNorm statistics adapt to the data (train.batchnorm adapt).")
    return config.with_overrides({"train.batchnorm": "adapt"})


@contextlib.contextmanager
def sharing_run_dir(paths: RunPaths) -> Iterator[None]:
    """Worker processes that Lightning starts inherit the environment: they write into this run."""
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(paths.root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[RUN_DIR_ENV]
        else:
            os.environ[RUN_DIR_ENV] = previous


def is_main_process() -> bool:
    """False in the worker processes of a multi-process run (their rank is set by the launcher)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def with_budget_note(source: ImageSource, splits: Splits, config: DataConfig) -> ImageSource:
    """Says in the report how many images kept their label and how many form the unlabeled pool."""
    if config.labels_per_class is None and config.label_fraction is None and not splits.unlabeled:
        return source
    if config.labels_per_class:
        budget = f"{config.labels_per_class} labeled images per class"
    elif config.label_fraction:
        budget = f"{config.label_fraction:.0%} of each class labeled"
    else:
        budget = "every train image labeled"
    note = (
        f"Label budget: {budget} ({len(splits.train)} train and {len(splits.val)} validation images); "
        f"{len(splits.unlabeled)} images form the unlabeled pool (used only by semi-supervised strategies)."
    )
    return replace(source, notes=[*source.notes, note])


def check_unlabeled_pool(checks: DataReport, splits: Splits, semi: SemiMethod) -> Splits:
    """The pool must exist for `--semi`, and never holds copies of validation or test images."""
    if not semi.needs_pool:
        return splits
    pool = set(splits.unlabeled)
    copies = {
        index
        for group in checks.duplicates
        if {"val", "test"} & set(group.splits)
        for index in group.indices
        if index in pool
    }
    if copies:
        logger.warning(
            "%d unlabeled images copy validation or test images; they stay out of the pool.", len(copies)
        )
    kept = [i for i in splits.unlabeled if i not in copies]
    if not kept:
        raise ConfigError(
            f"--semi {semi.name} learns from unlabeled images, and there are none: give --labels-per-class, "
            "--label-fraction or --unlabeled FOLDER."
        )
    return replace(splits, unlabeled=kept)


def with_note(source: ImageSource, note: str | None) -> ImageSource:
    """The source with one more fact for the report (none when `note` is None)."""
    return source if note is None else replace(source, notes=[*source.notes, note])


def with_chosen_crop(
    config: FitConfig, source: ImageSource, backbone: Backbone, checks: DataReport
) -> tuple[FitConfig, ImageSource]:
    """``preprocess.crop: auto`` decided on the shapes of the train and validation images and set on
    `backbone`: the config names the crop that ran (so that the folds, config.yaml and ``--resume``
    agree), and the source notes it for the report where it is not the weights' own."""
    prep = config.preprocess
    if prep.crop != "auto":
        return config, source
    elongation = checks.elongation.median if checks.elongation else None
    weights = backbone.preprocessing
    backbone.preprocessing = chosen = weights.with_crop("auto", elongation, prep.crop_pct)
    if elongation is None or chosen.crop_mode == weights.crop_mode:
        return config.with_overrides({"preprocess.crop": "weights"}), source
    kept = "whole" if chosen.crop_pct == 1 else f"{chosen.crop_pct:.0%} of each side kept"
    note = (
        f"The images are elongated ({elongation:.1f} : 1 at the median, long side to short): a centre crop "
        f"would keep {1 / elongation:.0%} of each, so they were resized to {chosen.image_size} x "
        f"{chosen.image_size} px ({kept}), their aspect ratio not kept (preprocess.crop: auto chose "
        f"{chosen.crop_mode}; --crop weights keeps the weights' own, {weights.crop_mode})."
    )
    overrides = {"preprocess.crop": chosen.crop_mode, "preprocess.crop_pct": chosen.crop_pct}
    return config.with_overrides(overrides), with_note(source, note)


def leave_out_bad_images(checks: DataReport, splits: Splits, policy: str) -> Splits:
    """Unreadable files stop the run (`error`) or are left out and listed in the report (`skip`)."""
    for problem in [*checks.errors, *checks.warnings]:
        logger.warning(problem)
    if checks.bad_images and policy == "error":
        listing = "; ".join(f"{bad.path}: {bad.reason}" for bad in checks.bad_images)
        raise DataError(f"Unreadable images ({listing}). Fix or delete them, or pass --bad-images skip.")
    return splits.without(checks.bad_indices)


def resolve_augment_name(name: str, source: ImageSource) -> str:
    """`auto` becomes what suits the source's images; any other name must be a registered preset."""
    resolved = source.augment if name == "auto" else name
    augment_presets.get(resolved)
    return resolved


def start_run_directory(
    config: FitConfig, source: ImageSource, backbone: Backbone, paths: RunPaths | None = None
) -> RunPaths:
    """Creates the run directory with its config.yaml and manifest.json; an existing run's is kept."""
    if paths is not None and (paths.config.exists() or not is_main_process()):
        return paths  # resumed, or written by the main process
    paths = paths or RunPaths.create(config.out, config.data.name, config.model.name)
    write_atomic(paths.config, config.to_yaml().encode())
    write_json(paths.manifest, build_manifest(config.seed, fingerprint(source), backbone.weights_sha256))
    return paths
