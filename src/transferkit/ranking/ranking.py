"""`rank`: which pretrained model to start from, from one forward pass per candidate."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from transferkit.config import DataConfig, ModelConfig
from transferkit.data.checks import CheckCache, check_data
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.errors import DataError
from transferkit.ranking.base import ScoreInputs, resolve_methods, transferability_scores
from transferkit.ranking.candidates import (
    Candidate,
    CandidateFeatures,
    RankSettings,
    load_candidate,
    resolve_candidates,
)
from transferkit.ranking.knn import knn_correct
from transferkit.ranking.leep import softmax
from transferkit.ranking.race import race_accuracy

logger = logging.getLogger(__name__)

PREFERRED_PRIMARY = "logme"  # orders the table when it is among the chosen scores


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's row: its size, speed and scores (None where a score does not apply).

    ``knn_correct`` says which training images the kNN vote got right (empty without kNN), in the order
    every candidate shares: what a paired comparison of two candidates reads. It stays out of `to_dict`.
    """

    label: str
    spec: str
    pretrained: bool
    architecture: str
    parameters: int
    images_per_second: float
    scores: dict[str, float | None]
    race_accuracy: float | None
    extraction_s: float
    features_cached: bool
    knn_correct: tuple[bool, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Ranking:
    """Candidates ordered best first by the `primary` score.

    Attributes:
        data: the dataset spec scored.
        methods: the scores computed, in column order.
        primary: the score the order follows.
        num_images: labeled training images every candidate was scored on.
        num_val_images: validation images of the linear-probe race (0 without a race).
        candidates: one result per model, best first.
        wall_time_s: the whole ranking, loading and decoding included.
        notes: what the user should know, e.g. scores left out for a model without a source head.
    """

    data: str
    methods: list[str]
    primary: str
    num_images: int
    num_val_images: int
    candidates: list[CandidateResult]
    wall_time_s: float
    notes: list[str] = field(default_factory=list)

    def ranks(self, method: str) -> list[int | None]:
        """Each candidate's place by `method` (1 = best), in the order of `candidates`."""
        values = [_sort_value(result, method) for result in self.candidates]
        scored = [(value, index) for index, value in enumerate(values) if value is not None]
        places: list[int | None] = [None] * len(values)
        for place, (_, index) in enumerate(sorted(scored, key=lambda pair: (-pair[0], pair[1])), start=1):
            places[index] = place
        return places

    def to_dict(self) -> dict[str, Any]:
        rows = [asdict(result) for result in self.candidates]
        for row in rows:
            del row["knn_correct"]
        for method in [*self.methods, "race_accuracy"]:
            for row, place in zip(rows, self.ranks(method), strict=True):
                row.setdefault("ranks", {})[method] = place
        return {**asdict(self), "candidates": rows}


def rank(
    data: str | DataConfig,
    models: Sequence[str | ModelConfig | Candidate],
    methods: str | Sequence[str] = "all",
    *,
    race: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    cache: bool = True,
    seed: int = 0,
    crop: str = "auto",
    crop_pct: float | None = None,
) -> Ranking:
    """Scores how well each model is expected to transfer to `data`, from its frozen features.

    Args:
        data: a dataset spec (as `fit` takes it) or a DataConfig; its train split is scored, as `fit`
            would split it.
        models: model specs, model configs (``pretrained=False`` for random-init controls) or Candidates.
        methods: ``all`` or score names: logme, hscore, knn, sfda (features), leep, nce (the source head).
        race: also fit a logistic-regression head per model and report its validation accuracy.
        image_size: input size for every model; None uses the size each model's weights expect.
        batch_size: images per forward pass; also the batch the speed is measured with.
        cache: reuse decoded images and features on disk, and store new ones.
        seed: seeds random-init models as `fit` does with the same seed.
        crop, crop_pct: how an image becomes each model's square input, as ``preprocess.crop`` and
            ``preprocess.crop_pct`` in `fit`.

    Returns:
        The Ranking, best candidate first.
    """
    started = time.perf_counter()
    names = resolve_methods(methods if isinstance(methods, str) else list(methods))
    candidates = resolve_candidates(list(models))
    settings = RankSettings(image_size, batch_size, cache, seed, crop, crop_pct)
    config = data if isinstance(data, DataConfig) else DataConfig(name=data)
    source = load_source(config)
    splits, elongation = scoring_splits(source, config, race, cache=cache)
    settings = replace(settings, elongation=elongation)
    labels = {name: _labels(source, indices) for name, indices in splits.items()}
    results = []
    for candidate in candidates:
        features = load_candidate(candidate, source, splits, settings)
        results.append(score_candidate(features, labels, len(source.class_names), names, race))
    primary = PREFERRED_PRIMARY if PREFERRED_PRIMARY in names else names[0]
    results.sort(key=lambda result: _order_key(result, primary))
    return Ranking(
        config.name,
        names,
        primary,
        len(splits.train),
        len(splits.val),
        results,
        time.perf_counter() - started,
        _notes(results, names),
    )


def scoring_splits(
    source: ImageSource, config: DataConfig, race: bool, *, cache: bool = True
) -> tuple[Splits, float | None]:
    """The labeled train split `fit` would train on (unreadable files left out), and val for a race, with
    the median elongation of the images `fit` would choose its crop on; with `cache`, the data check of
    files checked before is read back."""
    splits = split_with_budget(source, config)
    report = check_data(source, splits, CheckCache.default() if cache else None)
    if report.bad_images and config.bad_images == "error":
        listing = "; ".join(f"{bad.path}: {bad.reason}" for bad in report.bad_images)
        raise DataError(f"Unreadable images ({listing}). Fix or delete them, or pass --bad-images skip.")
    for bad in report.bad_images:
        logger.warning("left out unreadable image %s: %s", bad.path, bad.reason)
    splits = splits.without(report.bad_indices)
    present = {source.records[i].label for i in splits.train}
    if len(present) < 2:
        raise DataError(
            f"{config.name}: the train split holds {len(present)} class(es); ranking needs labeled "
            "training images of at least two classes."
        )
    if race and not splits.val:
        raise DataError(f"{config.name} has no validation split for the race; set data.val_fraction above 0.")
    elongation = report.elongation.median if report.elongation else None
    return Splits(splits.train, splits.val if race else [], []), elongation


def score_candidate(
    features: CandidateFeatures,
    labels: dict[str, torch.Tensor],
    num_classes: int,
    methods: list[str],
    race: bool,
) -> CandidateResult:
    """Every chosen score of one candidate (None where it does not apply), and its race accuracy."""
    logits = features.source_logits
    inputs = ScoreInputs(
        features.train.double().numpy(),
        labels["train"].numpy(),
        num_classes,
        None if logits is None else softmax(logits.double().numpy()),
    )
    scores: dict[str, float | None] = {}
    for name in methods:
        score = transferability_scores.get(name)
        scores[name] = score.compute(inputs) if score.applies_to(inputs) else None
    knn_right = tuple(knn_correct(inputs.features, inputs.labels).tolist()) if "knn" in methods else ()
    accuracy = None
    if race:
        accuracy = race_accuracy(features.train, labels["train"], features.val, labels["val"], num_classes)
    candidate = features.candidate
    return CandidateResult(
        candidate.label,
        candidate.spec,
        candidate.pretrained,
        features.architecture,
        features.parameters,
        features.images_per_second,
        scores,
        accuracy,
        features.extraction_s,
        features.features_cached,
        knn_right,
    )


def _labels(source: ImageSource, indices: list[int]) -> torch.Tensor:
    return torch.tensor([source.records[i].label for i in indices], dtype=torch.long)


def _sort_value(result: CandidateResult, method: str) -> float | None:
    value = result.race_accuracy if method == "race_accuracy" else result.scores.get(method)
    return value if value is not None and math.isfinite(value) else None


def _order_key(result: CandidateResult, primary: str) -> tuple[bool, float]:
    value = _sort_value(result, primary)
    return (value is None, -(value or 0.0))  # best first; candidates without the score last


def _notes(results: list[CandidateResult], methods: list[str]) -> list[str]:
    notes = []
    for result in results:
        missing = [name for name in methods if result.scores[name] is None]
        if missing:
            notes.append(
                f"{result.label}: no source head (a linear classifier over its own classes), "
                f"so no {', '.join(missing)}."
            )
    return notes
