"""The start chooses itself: `--model a,b,c` or `--model auto` scores the candidates on the train split
(LogME and leave-one-out kNN accuracy on frozen features, one forward pass each) and the best starts
the fit, if the evidence is clear. A `run:` start is scored against the models it descends from, and a
chained start that scores below its ancestor is reported as likely negative transfer, naming the
better start.

With few labels the scores are noisy: a few images decide a kNN accuracy. So the first model named
(for ``auto`` alone, the packaged default) is the reference, and the best-placed candidate replaces
it only when it gets more training images right than the reference does, image by image, by more than
one standard error of that paired difference.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.catalog import PACKAGED
from transferkit.config import FitConfig
from transferkit.errors import ConfigError, TransferkitError
from transferkit.models.saved import find_bundle, read_saved_config, saved_ancestry
from transferkit.models.sources import parse_model_spec
from transferkit.ranking import CandidateResult, Ranking, rank

logger = logging.getLogger(__name__)

AUTO = "auto"
SCORES = ("logme", "knn")  # kNN decides where the two disagree (see `_place`)


@dataclass(frozen=True)
class ModelChoice:
    """The scored candidates, best first, and the start the run uses.

    Attributes:
        candidates: per candidate, its ``spec``, ``scores`` and ``place`` (1 = best).
        chosen: the spec the run starts from.
        given: what ``model.name`` said, e.g. ``auto`` or ``run:runs/a``.
        warning: a chained start scored below a model it descends from; else None.
        evidence: how the best-placed candidate compared with the reference (`Evidence.to_dict`);
            None when nothing was weighed (the reference placed first, or a chained start is kept).
    """

    candidates: list[dict[str, Any]]
    chosen: str
    given: str
    warning: str | None = None
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "chosen": self.chosen,
            "scores": list(SCORES),
            "candidates": self.candidates,
            "warning": self.warning,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ModelChoice:
        return cls(
            saved["candidates"], saved["chosen"], saved["given"], saved.get("warning"), saved.get("evidence")
        )


@dataclass(frozen=True)
class Evidence:
    """The best-placed candidate against the reference, on the kNN votes of the same training images.

    Attributes:
        reference: the start kept unless the evidence is clear.
        challenger: the best-placed candidate.
        gain: the challenger's kNN accuracy minus the reference's.
        standard_error: of that gain, from the per-image differences.
    """

    reference: str
    challenger: str
    gain: float
    standard_error: float

    @property
    def clear(self) -> bool:
        return self.gain > self.standard_error

    @classmethod
    def between(cls, challenger: CandidateResult, reference: CandidateResult) -> Evidence:
        return cls.of_votes(challenger.spec, challenger.knn_correct, reference.spec, reference.knn_correct)

    @classmethod
    def of_votes(
        cls,
        challenger: str,
        challenger_right: Sequence[bool],
        reference: str,
        reference_right: Sequence[bool],
    ) -> Evidence:
        """The evidence from which of the same images each candidate's votes got right."""
        differences = [
            float(mine) - float(theirs)
            for mine, theirs in zip(challenger_right, reference_right, strict=True)
        ]
        if len(differences) < 2:  # nothing to weigh: no gain, and the reference stays
            return cls(reference, challenger, 0.0, 0.0)
        error = statistics.stdev(differences) / math.sqrt(len(differences))
        return cls(reference, challenger, statistics.fmean(differences), error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "challenger": self.challenger,
            "knn_gain": self.gain,
            "standard_error": self.standard_error,
            "clear": self.clear,
        }


def choose_start(config: FitConfig) -> tuple[FitConfig, ModelChoice | None]:
    """The config with the chosen start as ``model.name``, and the choice; (config, None) when there
    is nothing to choose: one model that descends from no other."""
    given = config.model.name
    specs = candidate_specs(given)
    chained = len(specs) == 1 and bool(ancestors(specs[0]))
    if len(specs) == 1 and not chained:
        return config, None
    if not config.model.pretrained:
        raise ConfigError(f"model.name {given!r} compares pretrained weights; set model.pretrained true.")
    if config.model.arch or config.model.weights:
        raise ConfigError(
            f"model.name {given!r} lists several models: give none of model.arch, model.weights."
        )
    candidates = [*specs, *(spec for spec in ancestors(specs[0]) if spec not in specs)] if chained else specs
    logger.info(
        "scoring %d candidate start models on the train split: %s", len(candidates), ", ".join(candidates)
    )
    try:
        ranking = rank(
            config.data,
            candidates,
            list(SCORES),
            image_size=config.preprocess.image_size,
            cache=config.data.cache,
            seed=config.seed,
            crop=config.preprocess.crop,
            crop_pct=config.preprocess.crop_pct,
        )
    except TransferkitError as err:
        if not chained:
            raise
        # comparing a named start with its ancestors is advice: an ancestor that no longer loads
        # (a hub model offline, a moved file) must not stop the fit
        logger.warning("could not compare %s with the models it descends from: %s", given, err)
        return config, None
    rows = _rows(ranking)
    if chained:  # the user named the start: keep it, but say when an ancestor looks better
        choice = ModelChoice(rows, specs[0], given, _negative_transfer(rows, specs[0]))
    else:
        choice = _weigh(ranking, rows, given, reference=specs[0])
    if choice.warning:
        logger.warning(choice.warning)
    logger.info("start model: %s (of %s)", choice.chosen, ", ".join(row["spec"] for row in rows))
    return config.with_overrides({"model.name": choice.chosen}), choice


def _weigh(ranking: Ranking, rows: list[dict[str, Any]], given: str, reference: str) -> ModelChoice:
    """The best-placed candidate if its kNN gain over `reference` is clear, else the reference."""
    best = rows[0]["spec"]
    if best == reference:
        return ModelChoice(rows, best, given)
    results = {result.spec: result for result in ranking.candidates}
    evidence = Evidence.between(results[best], results[reference])
    if not evidence.clear:
        logger.info(
            "%s placed first, but its kNN accuracy gains %+.1f points over %s's, no more than one "
            "standard error (%.1f): keeping %s",
            best,
            100 * evidence.gain,
            reference,
            100 * evidence.standard_error,
            reference,
        )
    return ModelChoice(rows, best if evidence.clear else reference, given, evidence=evidence.to_dict())


def candidate_specs(given: str) -> list[str]:
    """``a,b,c`` -> its specs; ``auto`` -> the packaged models plus the ancestors of any ``run:`` spec
    listed beside it (``auto,run:runs/a``). The first spec is the reference of the choice: the first
    model named, else the first packaged model, the default."""
    specs = [spec.strip() for spec in given.split(",")] if "," in given else [given]
    if AUTO in specs:
        named = [spec for spec in specs if spec != AUTO]
        line = [ancestor for spec in named for ancestor in ancestors(spec)]
        specs = [*named, *(model.name for model in PACKAGED), *line]
    unique = list(dict.fromkeys(spec for spec in specs if spec))
    for spec in unique:
        parse_model_spec(spec)  # a typo fails before any model loads
    return unique


def ancestors(spec: str) -> list[str]:
    """The loadable models a ``run:`` spec descends from, nearest first; [] for any other spec."""
    if not spec.startswith("run:"):
        return []
    try:
        saved = read_saved_config(find_bundle(Path(spec.removeprefix("run:"))) / "config.json")
    except TransferkitError:
        return []  # `fit` reports a broken run when it loads it
    # a random-init start (no weights hash) is no pretrained model to compare with
    line = [entry.get("spec") for entry in saved_ancestry(saved) if entry.get("weights_sha256")]
    return [spec for spec in line if isinstance(spec, str) and _loadable(spec)]


def _loadable(spec: str) -> bool:
    """A spec that still names a model here: a packaged name, a source prefix, or an existing run."""
    try:
        parsed = parse_model_spec(spec)
    except TransferkitError:
        return False
    if parsed.source == "run":
        try:
            find_bundle(Path(parsed.name))
        except TransferkitError:
            return False
    return parsed.source != "path" or Path(spec).exists()


def _rows(ranking: Ranking) -> list[dict[str, Any]]:
    """Candidates ordered by their mean place over `SCORES`, kNN breaking ties."""
    places = {method: ranking.ranks(method) for method in SCORES}
    rows: list[dict[str, Any]] = []
    for index, result in enumerate(ranking.candidates):
        mine = [places[method][index] for method in SCORES]
        known = [place for place in mine if place is not None]
        rows.append(
            {
                "spec": result.spec,
                "scores": {method: result.scores.get(method) for method in SCORES},
                "mean_place": sum(known) / len(known) if known else float("inf"),
            }
        )
    rows.sort(key=lambda row: (row["mean_place"], -(row["scores"]["knn"] or 0.0)))
    for place, row in enumerate(rows, start=1):
        row["place"] = place
    return rows


def _negative_transfer(rows: list[dict[str, Any]], start: str) -> str | None:
    """A warning when a model the start descends from places above it."""
    place = {row["spec"]: row["place"] for row in rows}
    better = [row["spec"] for row in rows if row["place"] < place[start]]
    if not better:
        return None
    knn = {row["spec"]: row["scores"]["knn"] for row in rows}
    return (
        f"The start {start} descends from {better[0]}, which scores higher on this data (kNN accuracy "
        f"{knn[better[0]]:.3f} against {knn[start]:.3f}): fine-tuning the chained model may transfer worse "
        f"than its ancestor. Compare with --model {better[0]}, or let fit choose with --model auto,{start}."
    )
