"""K-fold cross-validation inside `fit`: a model per fold, trained on the other folds and predicting its
own; the out-of-fold predictions give the fold metrics and the final model's calibration set."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import lightning as L
import numpy as np
import torch

from transferkit.api.recipe import Recipe, chosen_candidate
from transferkit.config import SMALL_VALIDATION_PER_CLASS
from transferkit.data.cache import SplitImages
from transferkit.data.folds import make_folds
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.errors import ConfigError
from transferkit.evaluation.calibration import CalibrationSet, tempered_probabilities
from transferkit.evaluation.cross_validation import summarize_folds
from transferkit.evaluation.operating_point import RecallTarget, attainable_recall
from transferkit.faults import kill_point
from transferkit.models import Backbone
from transferkit.models.ensemble import Ensemble
from transferkit.run_dir import RunPaths
from transferkit.training.interpolation import WeightChoice
from transferkit.training.loop import TrainingResult
from transferkit.training.semi import PoolCheck, Teacher

logger = logging.getLogger(__name__)
AUTO_FOLDS = 5


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold predictions of every train image (validation folded in).

    Attributes:
        indices: the images' record indices, in the order of the arrays.
        fold_of: the fold that held each image out, ``(N,)``.
        held_out: view logits of each image from the model that did not train on it (at the chosen
            WiSE-FT candidate), and the labels.
        choice: the WiSE-FT candidates' out-of-fold accuracy and the α chosen (None: WiSE-FT off, or a
            strategy without a fitted head).
        members: the fold models, when the final model is their ensemble (else empty: freed).
        last_training: the last fold's training, for the report of an ensemble.
        teachers: where every fold trained a teacher (the recipe without the pool), their out-of-fold
            predictions, chosen and measured the same way.
        pool: the teachers against the fold models, and whether the final model uses the pool.
        fold_teachers: the teachers' averaged predictions of the pool, from which a final model trained on
            every label takes its pseudo-labels.
    """

    indices: list[int]
    fold_of: np.ndarray
    held_out: CalibrationSet
    choice: WeightChoice | None
    members: list[Backbone]
    last_training: TrainingResult
    teachers: OutOfFold | None = None
    pool: PoolCheck | None = None
    fold_teachers: Teacher | None = None

    def summary(self, source: ImageSource, temperature: float) -> dict[str, Any]:
        """Per-fold and out-of-fold metrics, with the final model's temperature applied."""
        probabilities = self.probabilities(temperature)
        labels = self.held_out.labels
        return summarize_folds(self.fold_of, labels, probabilities, source.class_names, source.groupings)

    def probabilities(self, temperature: float) -> np.ndarray:
        return tempered_probabilities(self.held_out.logits, temperature)

    def without_pool(self) -> CrossValidation:
        """The teachers' out-of-fold predictions in place of the fold models': the final model is then
        the recipe without the pool, chosen and calibrated on them."""
        if self.teachers is None:
            raise ValueError("no teachers to fall back on")
        return replace(self, held_out=self.teachers.held_out, choice=self.teachers.choice)

    def ensemble(self) -> Backbone:
        """The fold models as one network that predicts the mean of their probabilities.

        Its output is a log-probability, so the out-of-fold temperature applies to it as to logits: a
        softmax is unchanged by the per-image shift from logits to log-probabilities, scaled or not.
        """
        first = self.members[0]
        return replace(
            first,
            spec=f"{first.spec} (ensemble of {len(self.members)} folds)",
            model=Ensemble([m.model for m in self.members]),
        )


@dataclass(frozen=True)
class OutOfFold:
    """One recipe's fold models on the images they held out: the WiSE-FT choice made on them (None: a
    single candidate) and the chosen candidate's view logits, to calibrate on."""

    held_out: CalibrationSet
    choice: WeightChoice | None

    @classmethod
    def chosen(
        cls, candidates: list[list[np.ndarray]], labels: np.ndarray, name: str, *, balanced: bool
    ) -> OutOfFold:
        """From each fold's candidates' view logits of its held-out images, in fold order."""
        joined = [np.concatenate(fold, axis=1) for fold in zip(*candidates, strict=True)]
        choice, held_out = chosen_candidate(joined, labels, name, balanced=balanced)
        return cls(held_out, choice)


def resolve_folds(recipe: Recipe, splits: Splits, recall_target: RecallTarget | None = None) -> int | None:
    """The number of folds to cross-validate with, or None: ``cv.folds``, where ``auto`` means
    `AUTO_FOLDS` when validation is too small to choose on (`_small_validation`)."""
    config = recipe.config
    folds = config.cv.folds
    several_devices = config.runtime.devices > 1 or config.runtime.num_nodes > 1
    if folds == "auto":
        reason = _small_validation(recipe, splits, recall_target)
        if reason is None:
            return None
        if several_devices:
            logger.warning("%s, but cross-validation runs on one device: the choices are made on it.", reason)
            return None
        labels = Counter(recipe.source.records[i].label for i in [*splits.train, *splits.val])
        smallest = min(labels.get(k, 0) for k in range(len(recipe.source.class_names)))
        if smallest < 2:
            logger.warning("%s, and a class has %d train image(s): no cross-validation.", reason, smallest)
            return None
        folds = min(AUTO_FOLDS, smallest)
        logger.info(
            "%s: %d-fold cross-validation over train makes the choices instead (temperature, WiSE-FT, "
            "threshold; cv.folds).",
            reason,
            folds,
        )
    if folds is not None and several_devices:
        raise ConfigError("Cross-validation runs on one device: set cv.folds null with several devices.")
    return folds


def _small_validation(recipe: Recipe, splits: Splits, recall_target: RecallTarget | None) -> str | None:
    """Why validation is too small to choose on: fewer than `SMALL_VALIDATION_PER_CLASS` images a class,
    or too few images of a recall target's class for its threshold to promise the recall; else None."""
    classes = len(recipe.source.class_names)
    if len(splits.val) < SMALL_VALIDATION_PER_CLASS * classes:
        return f"Validation holds {len(splits.val)} images for {classes} classes"
    if recall_target is not None:
        positives = sum(recipe.source.records[i].label == recall_target.class_index for i in splits.val)
        if attainable_recall(recall_target.recall, positives) < recall_target.recall:
            return (
                f"Validation holds {positives} image(s) of {recall_target.class_name!r}, too few for a "
                f"threshold to promise {100 * recall_target.recall:.0f}% recall of it"
            )
    return None


def cross_validate(
    recipe: Recipe, data: dict[str, SplitImages], folds: int, paths: RunPaths, *, resume: bool
) -> CrossValidation:
    """Trains one model per fold on the others (``folds/fold-N`` in the run directory, each resumable)
    and collects its view logits on the fold it did not see, for every WiSE-FT candidate; the candidate
    with the best out-of-fold predictions is the one every model of the run keeps."""
    pool = joined(data["train"], data["val"])
    held_out = make_folds(recipe.source, pool.indices, folds, recipe.config.data.split_seed)
    position = {index: row for row, index in enumerate(pool.indices)}
    candidates: list[list[np.ndarray]] = []  # per fold, per candidate: view logits of its held-out images
    order: list[int] = []
    fold_of: list[int] = []
    members: list[tuple[Backbone, TrainingResult]] = []
    summaries: list[Any] = []
    for number, part in enumerate(held_out):
        rows = [position[index] for index in part]
        rest = sorted(set(range(len(pool.indices))) - set(rows))
        fold_data = {**data, "train": subset(pool, rest), "val": subset(pool, rows)}
        del fold_data["test"]  # a fold model never sees the test split
        kill_point(f"fold:{number}")
        logger.info("cross-validation: fold %d of %d (%d images held out)", number + 1, folds, len(rows))
        # the fold's own random draws (a new head, a random-init network): the same after a resume
        L.seed_everything((recipe.config.seed * 1_000 + number) % 2**32, workers=True, verbose=False)
        backbone = recipe.backbone()
        fold_paths = paths.fold(number)
        training = recipe.train(backbone, fold_data, fold_paths, resume=resume, keeps_best=False)
        # a finished fold resumes from its trained weights: its Lightning checkpoints (two of about 40 MB
        # for Lite0, optimizer state included) would only fill the disk
        for checkpoint in (fold_paths.last_checkpoint, fold_paths.best_checkpoint):
            checkpoint.unlink(missing_ok=True)
        candidates.append(recipe.candidate_logits(backbone, training, fold_data["val"].images))
        summaries.append(training.semi_summary)
        members += [(backbone, training)] if recipe.config.cv.final == "ensemble" else []
        order += rows
        fold_of += [number] * len(rows)
    labels = pool.labels.numpy()[order]
    name = f"out-of-fold predictions ({folds} folds, {len(order)} images)"
    balanced = recipe.balances(pool.labels)
    students = OutOfFold.chosen(candidates, labels, name, balanced=balanced)
    for member, member_training in members:
        recipe.finish(member, member_training, students.choice.alpha if students.choice else 1.0)
    teachers = teachers_out_of_fold(recipe, summaries, labels, name, balanced=balanced)
    check = None
    if teachers is not None:
        gated = recipe.methods.semi.gated and not members  # an ensemble of fold models keeps its students
        accuracies = teachers.held_out.accuracy(), students.held_out.accuracy()
        check = PoolCheck(*accuracies, len(labels), "out of fold", gated)
    indices = [pool.indices[row] for row in order]
    return CrossValidation(
        indices,
        np.asarray(fold_of),
        students.held_out,
        students.choice,
        [m for m, _ in members],
        training,
        teachers,
        check,
        averaged_teachers(recipe, summaries),
    )


def teachers_out_of_fold(
    recipe: Recipe, summaries: list[Any], labels: np.ndarray, name: str, *, balanced: bool
) -> OutOfFold | None:
    """The fold teachers' out-of-fold predictions, where the semi-supervised method trained one in
    every fold (the recipe without the pool); None otherwise."""
    candidates = []
    for summary in summaries:
        logits = recipe.methods.semi.teacher_logits(summary)
        if logits is None:
            return None
        candidates.append(list(logits))
    return OutOfFold.chosen(candidates, labels, name, balanced=balanced)


def averaged_teachers(recipe: Recipe, summaries: list[Any]) -> Teacher | None:
    """The fold teachers' averaged predictions of the pool, where every fold trained one; else None."""
    pools = [recipe.methods.semi.teacher_pool(summary) for summary in summaries]
    known = [probabilities for probabilities in pools if probabilities is not None]
    if not known:
        return None
    if len(known) < len(pools):
        logger.warning(
            "%d of %d folds kept no teacher_pool.npy (begun by an earlier transferkit): the final model "
            "trains a teacher of its own for its pseudo-labels.",
            len(pools) - len(known),
            len(pools),
        )
        return None
    return Teacher.averaged(known)


def joined(first: SplitImages, second: SplitImages) -> SplitImages:
    return SplitImages(
        torch.cat([first.images, second.images]),
        torch.cat([first.labels, second.labels]),
        [*first.indices, *second.indices],
    )


def subset(split: SplitImages, rows: list[int]) -> SplitImages:
    chosen = torch.tensor(rows, dtype=torch.long)
    return SplitImages(split.images[chosen], split.labels[chosen], [split.indices[row] for row in rows])
