"""`suggest`: the pool images to label next, written as a manifest with the reason for each.

>>> from transferkit.active import suggest
>>> picks = suggest("runs/my-run", pool="photos/", budget=20, out="to_label.csv")  # doctest: +SKIP
>>> cold = suggest(pool="photos/", budget=20, model="efficientnet_lite0")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.active.paths import manifest_path
from transferkit.active.pool import Exclusion, Pool, build_pool, run_labelled
from transferkit.active.scorer import Scorer, class_probabilities, load_scorer, pool_features
from transferkit.active.selection import (
    SelectionInputs,
    l2_normalised,
    select,
    selection_methods,
    squared_distances,
)
from transferkit.data.checks import CheckCache
from transferkit.errors import ConfigError
from transferkit.files import write_atomic

# With a fitted run: the best of `benchmarks/active.py` (benchmarks/results/active.md). Without one:
# TypiClust, which needs only features and is built for the first few labels.
DEFAULT_METHOD = "margin"
COLD_START_METHOD = "typiclust"
MANIFEST_COLUMNS = (
    "path",
    "rank",
    "method",
    "score",
    "score_name",
    "predicted",
    "probability",
    "nearest_labelled",
    "distance",
)


@dataclass(frozen=True)
class Suggestion:
    """One image to label, and why.

    Attributes:
        rank: 1 for the first pick.
        score: the method's score when it was picked (`Suggestions.score_name`); nan for random.
        predicted, probability: the run's most probable class and its probability ("" and nan cold).
        nearest_labelled: the most similar labelled image ("" when none is labelled), and its feature
            distance, sqrt(2 - 2 cos), 0 for the same image and 2 for opposite features.
    """

    path: str
    rank: int
    score: float
    predicted: str
    probability: float
    nearest_labelled: str
    distance: float


@dataclass(frozen=True)
class Suggestions:
    """What `suggest` picked, what it left out, and the manifest it wrote."""

    method: str
    model: str
    score_name: str
    picks: list[Suggestion]
    excluded: list[Exclusion]
    pool_size: int
    labelled_size: int
    wall_time_s: float
    out: Path | None = None

    @property
    def paths(self) -> list[str]:
        return [pick.path for pick in self.picks]


def suggest(
    run: str | os.PathLike[str] | None = None,
    *,
    pool: str | os.PathLike[str],
    budget: int = 20,
    method: str | None = None,
    model: str | None = None,
    labelled: list[str] | tuple[str, ...] = (),
    out: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    cache: bool = True,
    seed: int = 0,
) -> Suggestions:
    """Picks `budget` images of `pool` to label next: informative and unlike each other and the labels.

    Args:
        run: a run directory (or bundle) whose model scores the pool; None for a cold start.
        pool: a folder of images (recursively) or a manifest with a path column.
        budget: images to pick.
        method: a selection method (`selection_methods`); None: margin with a run, typiclust without.
        model: the pretrained model of a cold start (default: the packaged EfficientNet-Lite0).
        labelled: folders or manifests of images already labelled beyond the run's dataset (labels.csv).
        out: where to write the manifest of picks (CSV); None writes nothing.
        image_size: input size of a cold start's model (default: what its weights expect).
        batch_size: images per forward pass.
        cache: reuse decoded images and features on disk (the same cache as `rank`), and store new ones.
        seed: for the methods that draw at random (badge, random) and k-means.
    """
    started = time.perf_counter()
    method = _checked_method(method, fitted=run is not None, budget=budget)
    scorer = load_scorer(run, model, image_size)
    labelled_data = run_labelled(Path(run)) if run is not None else None
    labelled_specs = [str(spec) for spec in labelled]
    checks = CheckCache.default() if cache else None
    chosen = build_pool(str(pool), labelled_data, labelled_specs, scorer.channels, checks)
    features = pool_features(scorer, chosen.source, chosen.eligible + chosen.labelled, batch_size, cache)
    pool_part, labelled_part = features[: len(chosen.eligible)], features[len(chosen.eligible) :]
    probabilities = class_probabilities(scorer, pool_part)
    inputs = SelectionInputs(l2_normalised(pool_part), l2_normalised(labelled_part), probabilities)
    picks = select(method, inputs, budget, seed)
    rows = _suggestions(chosen, scorer, inputs, picks.indices, picks.scores)
    result = Suggestions(
        method,
        scorer.spec,
        picks.score_name,
        rows,
        chosen.excluded,
        len(chosen.eligible),
        len(chosen.labelled),
        time.perf_counter() - started,
        Path(out) if out is not None else None,
    )
    if out is not None:
        write_suggestions(result, Path(out))
    return result


def _checked_method(method: str | None, *, fitted: bool, budget: int) -> str:
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}.")
    name = method or (DEFAULT_METHOD if fitted else COLD_START_METHOD)
    if selection_methods.get(name).needs_model and not fitted:
        cold = [n for n in selection_methods if not selection_methods.get(n).needs_model]
        raise ConfigError(
            f"--method {name} ranks images by a fitted model's uncertainty, and no run was given. Give the "
            f"run directory (transferkit suggest RUN --pool ...), or start cold with --method "
            f"{' or '.join(cold)}."
        )
    return name


def _suggestions(
    pool: Pool, scorer: Scorer, inputs: SelectionInputs, picked: np.ndarray, scores: np.ndarray
) -> list[Suggestion]:
    nearest, distance = _nearest_labelled(inputs, picked)
    rows = []
    for rank, (position, score) in enumerate(zip(picked.tolist(), scores.tolist(), strict=True), start=1):
        predicted, probability = "", math.nan
        if inputs.probabilities is not None and scorer.label_names is not None:
            top = int(np.argmax(inputs.probabilities[position]))
            predicted, probability = scorer.label_names[top], float(inputs.probabilities[position, top])
        near = pool.source.records[pool.labelled[nearest[rank - 1]]].path if len(pool.labelled) else ""
        rows.append(
            Suggestion(
                pool.source.records[pool.eligible[position]].path,
                rank,
                float(score),
                predicted,
                probability,
                near,
                float(distance[rank - 1]),
            )
        )
    return rows


def _nearest_labelled(inputs: SelectionInputs, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(inputs.labelled):
        return np.zeros(len(picked), dtype=np.int64), np.full(len(picked), math.nan)
    distances = squared_distances(inputs.pool[picked], inputs.labelled)
    nearest = distances.argmin(axis=1)
    return nearest, np.sqrt(distances[np.arange(len(picked)), nearest])


def write_suggestions(suggestions: Suggestions, out: Path) -> Path:
    """The picks as a CSV manifest (one image per row, best first), written atomically.

    Its ``path`` and ``nearest_labelled`` columns are relative to the manifest's folder for images below
    it, absolute otherwise, as the manifest reader expects; `transferkit label`, `predict` and
    `fit --unlabeled` read it as it is.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for pick in suggestions.picks:
        writer.writerow(
            [
                manifest_path(pick.path, out),
                pick.rank,
                suggestions.method,
                _number(pick.score),
                suggestions.score_name,
                pick.predicted,
                _number(pick.probability),
                manifest_path(pick.nearest_labelled, out) if pick.nearest_labelled else "",
                _number(pick.distance),
            ]
        )
    return write_atomic(out, buffer.getvalue().encode())


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"
