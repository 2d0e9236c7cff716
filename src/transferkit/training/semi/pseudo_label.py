"""Pseudo-label self-training on frozen features: cheap enough for a CPU, several rounds in seconds.

Each round fits a linear head on the labeled images plus the pseudo-labeled ones so far, then labels
the pool: per class, the images predicted as that class with at least `threshold` confidence, most
confident first, up to the class's share of a growing part of the pool (round r of R: r / R of it,
shared out by the labeled class frequencies, so one class cannot swamp the others). The last round's
selection joins the training set of whatever strategy follows.

A pool can hurt: when the features do not separate the classes, confident pseudo-labels are confidently
wrong. So before they are used, the gate measures them: the labeled images (train and validation) are
dealt into folds, self-training is redone without each held-out fold, and a head trained with that
fold's pseudo-labels must classify the held-out images better than one trained without them. Otherwise
the pool is left out, and the report says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.data.splits import UNLABELED
from transferkit.faults import kill_point
from transferkit.files import write_json
from transferkit.models.backbone import Backbone
from transferkit.progress import progress_task
from transferkit.training.features import extract_feature_sets, fit_linear_head
from transferkit.training.method_options import PseudoLabelOptions
from transferkit.training.semi.base import SemiMethod, Splits, semi_methods

logger = logging.getLogger(__name__)

L2 = 1e-3
GATE_FOLDS = 5
GATE_SEED = 0  # the deal of the labeled images into folds; fixed, so a rerun gates alike


@semi_methods.register("pseudo-label")
class PseudoLabel(SemiMethod):
    """Self-training rounds on frozen features before training; the confident, class-balanced
    pseudo-labels join the training set of whatever strategy follows."""

    Options = PseudoLabelOptions
    name = "pseudo-label"
    needs_pool = True

    def pseudo_label(
        self, backbone: Backbone, normalize: nn.Module, data: Splits, run_dir: Path, *, save: bool
    ) -> tuple[Splits, PseudoLabels]:
        saved = run_dir / "pseudo_labels.json"
        return label_the_pool(backbone, normalize, data, self.options, saved, save=save)

    def note(self, history: list[dict[str, Any]], summary: Any) -> str | None:
        if summary is None:
            return None
        steps = "; ".join(
            f"round {r['round']}: {r['pseudo_labels']} pseudo-labels"
            + (f" ({r['pseudo_label_accuracy']:.1%} right)" if r["pseudo_label_accuracy"] is not None else "")
            + (f", val accuracy {r['val_accuracy']:.1%}" if r["val_accuracy"] is not None else "")
            for r in summary.rounds
        )
        note = f"Pseudo-label self-training on frozen features: {steps}."
        if summary.gate is not None:
            gate = summary.gate
            verdict = "used" if gate["open"] else "**not used**: the pseudo-labels did not raise it"
            note += (
                f" Gate: out-of-fold accuracy of a head on the {gate['images']} labeled images, "
                f"{gate['folds']} folds, {gate['without']:.1%} without the pseudo-labels and "
                f"{gate['with_pool']:.1%} with them; the pool was {verdict}."
            )
        return note


@dataclass
class PseudoLabels:
    """Pool positions given a pseudo-label, the labels, and what each round did."""

    positions: list[int]
    labels: list[int]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    gate: dict[str, Any] | None = None  # `PoolGate.to_dict`, when the gate ran

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "labels": self.labels, "rounds": self.rounds, "gate": self.gate}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PseudoLabels:
        return cls(
            list(values["positions"]), list(values["labels"]), list(values["rounds"]), values.get("gate")
        )


@dataclass(frozen=True)
class PoolGate:
    """Out-of-fold accuracy on the labeled images of a head trained without and with pseudo-labels."""

    without: float
    with_pool: float
    folds: int
    images: int

    @property
    def open(self) -> bool:
        """The pool is used only when it measurably helps: a tie is no reason to train on guesses."""
        return self.with_pool > self.without

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": self.open}


def _accuracy(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
) -> float | None:
    if not len(labels):
        return None
    return float(((features @ weight.T + bias).argmax(1) == labels).float().mean())


def select(probabilities: torch.Tensor, quotas: list[int], threshold: float) -> tuple[list[int], list[int]]:
    """Per class, the most confident pool images above `threshold`, at most that class's quota."""
    confidence, predicted = probabilities.max(1)
    positions: list[int] = []
    labels: list[int] = []
    for label, quota in enumerate(quotas):
        candidates = torch.nonzero((predicted == label) & (confidence >= threshold)).flatten()
        ranked = candidates[confidence[candidates].argsort(descending=True)][:quota]
        positions += ranked.tolist()
        labels += [label] * len(ranked)
    return positions, labels


def self_train(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    pool: tuple[torch.Tensor, torch.Tensor],
    *,
    num_classes: int,
    rounds: int,
    threshold: float,
) -> PseudoLabels:
    """Self-training rounds on (features, labels) pairs; the pool's labels (-1 where unknown) only
    measure the pseudo-labels' accuracy, they are never trained on."""
    (train_x, train_y), (val_x, val_y), (pool_x, pool_true) = train, val, pool
    prior = torch.bincount(train_y, minlength=num_classes).float() / len(train_y)
    result = PseudoLabels([], [])
    for number in range(1, rounds + 1):
        chosen = torch.tensor(result.positions, dtype=torch.long)
        x = torch.cat([train_x, pool_x[chosen]])
        y = torch.cat([train_y, torch.tensor(result.labels, dtype=torch.long)])
        weight, bias = fit_linear_head(x, y, num_classes, L2)
        known = pool_true[chosen] >= 0
        pseudo_accuracy = (
            float((pool_true[chosen][known] == y[len(train_y) :][known]).float().mean())
            if known.any()
            else None
        )
        result.rounds.append(
            {
                "round": number - 1,
                "pseudo_labels": len(result.positions),
                "pseudo_label_accuracy": pseudo_accuracy,
                "val_accuracy": _accuracy(weight, bias, val_x, val_y),
            }
        )
        probabilities = (pool_x @ weight.T + bias).softmax(1)
        quotas = (prior * len(pool_x) * number / rounds).ceil().long().tolist()  # a growing curriculum
        result.positions, result.labels = select(probabilities, quotas, threshold)
    return result


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """(N,) the fold of each image: each class dealt round-robin over the folds in a seeded order."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(len(labels), dtype=torch.long)
    for label in labels.unique():
        members = order[labels[order] == label]
        fold[members] = torch.arange(len(members)) % folds
    return fold


def pool_gate(
    labeled: tuple[torch.Tensor, torch.Tensor],
    pool_x: torch.Tensor,
    *,
    num_classes: int,
    rounds: int,
    threshold: float,
    on_fold: Callable[[int], None] | None = None,
) -> PoolGate | None:
    """Whether self-training's pseudo-labels help a head classify labeled images it never saw; None
    when a class has fewer than 2 labeled images to hold out."""
    x, y = labeled
    folds = gate_folds(y)
    if folds < 2:
        return None
    fold_of = stratified_folds(y, folds, GATE_SEED)
    nothing = (x[:0], y[:0])
    unknown = torch.full((len(pool_x),), -1, dtype=torch.long)
    right_without = right_with = 0
    for fold in range(folds):
        held, kept = fold_of == fold, fold_of != fold
        inner = (x[kept], y[kept])
        chosen = self_train(
            inner, nothing, (pool_x, unknown), num_classes=num_classes, rounds=rounds, threshold=threshold
        )
        right_without += _right(fit_linear_head(*inner, num_classes, L2), x[held], y[held])
        pseudo = (
            torch.tensor(chosen.positions, dtype=torch.long),
            torch.tensor(chosen.labels, dtype=torch.long),
        )
        enlarged = (torch.cat([inner[0], pool_x[pseudo[0]]]), torch.cat([inner[1], pseudo[1]]))
        right_with += _right(fit_linear_head(*enlarged, num_classes, L2), x[held], y[held])
        if on_fold is not None:
            on_fold(1)
    return PoolGate(right_without / len(y), right_with / len(y), folds, len(y))


def gate_folds(labels: torch.Tensor) -> int:
    """`GATE_FOLDS`, or fewer when the smallest labeled class cannot fill them."""
    counts = torch.bincount(labels)
    return min(GATE_FOLDS, int(counts[counts > 0].min()))


def _right(head: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor, labels: torch.Tensor) -> int:
    weight, bias = head
    return int(((features @ weight.T + bias).argmax(1) == labels).sum())


def label_the_pool(
    backbone: Backbone,
    normalize: nn.Module,
    data: dict[str, SplitImages],
    options: PseudoLabelOptions,
    saved: Path,
    *,
    save: bool = True,
) -> tuple[dict[str, SplitImages], PseudoLabels]:
    """The splits with pseudo-labeled pool images added to train; the selection is kept in `saved`,
    so a resumed run trains on the very same images."""
    pool = data[UNLABELED]
    if saved.exists():
        labels = PseudoLabels.from_dict(json.loads(saved.read_text()))
    else:
        names = ("train", "val", UNLABELED)
        with progress_task("pseudo-labels: frozen features", sum(len(data[n].images) for n in names)) as step:
            sets = extract_feature_sets(backbone, normalize, [data[n].images for n in names], on_batch=step)
        features = dict(zip(names, sets, strict=True))
        num_classes = int(backbone.head().out_features)  # type: ignore[arg-type]
        labels = self_train(
            (features["train"], data["train"].labels),
            (features["val"], data["val"].labels),
            (features[UNLABELED], pool.labels),
            num_classes=num_classes,
            rounds=options.rounds,
            threshold=options.threshold,
        )
        if options.gate:
            labels = gated(labels, features, data, num_classes, options)
        if save:
            write_json(saved, labels.to_dict())
        kill_point("pseudo-labels")
    chosen = torch.tensor(labels.positions, dtype=torch.long)
    train = data["train"]
    enlarged = SplitImages(
        torch.cat([train.images, pool.images[chosen]]),
        torch.cat([train.labels, torch.tensor(labels.labels, dtype=torch.long)]),
        [*train.indices, *(pool.indices[i] for i in labels.positions)],
    )
    return {**data, "train": enlarged}, labels


def gated(
    labels: PseudoLabels,
    features: dict[str, torch.Tensor],
    data: dict[str, SplitImages],
    num_classes: int,
    options: PseudoLabelOptions,
) -> PseudoLabels:
    """`labels` with the gate's measurement, and no pseudo-labels when the gate stays shut."""
    labeled = (
        torch.cat([features["train"], features["val"]]),
        torch.cat([data["train"].labels, data["val"].labels]),
    )
    with progress_task("pseudo-labels: gate folds", gate_folds(labeled[1])) as step:
        gate = pool_gate(
            labeled,
            features[UNLABELED],
            num_classes=num_classes,
            rounds=options.rounds,
            threshold=options.threshold,
            on_fold=step,
        )
    if gate is None:
        logger.warning(
            "too few labeled images per class to gate the pool; the pseudo-labels are used unmeasured"
        )
        return labels
    if not gate.open:
        logger.warning(
            "pseudo-labels do not raise the out-of-fold accuracy of a head on the labeled images "
            "(%.1f%% -> %.1f%%): the pool is not used",
            100 * gate.without,
            100 * gate.with_pool,
        )
        return PseudoLabels([], [], labels.rounds, gate.to_dict())
    return PseudoLabels(labels.positions, labels.labels, labels.rounds, gate.to_dict())
