"""Pseudo-label self-training on frozen features: cheap enough for a CPU, several rounds in seconds.

Each round fits a linear head on the labeled images plus the pseudo-labeled ones so far, then labels
the pool: per class, the images predicted as that class with at least `threshold` confidence, most
confident first, up to the class's share of a growing part of the pool (round r of R: r / R of it,
shared out by the labeled class frequencies, so one class cannot swamp the others). The last round's
selection joins the training set of whatever strategy follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

L2 = 1e-3


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
        return f"Pseudo-label self-training on frozen features: {steps}."


@dataclass
class PseudoLabels:
    """Pool positions given a pseudo-label, the labels, and what each round did."""

    positions: list[int]
    labels: list[int]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "labels": self.labels, "rounds": self.rounds}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PseudoLabels:
        return cls(list(values["positions"]), list(values["labels"]), list(values["rounds"]))


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
        labels = self_train(
            (features["train"], data["train"].labels),
            (features["val"], data["val"].labels),
            (features[UNLABELED], pool.labels),
            num_classes=int(backbone.head().out_features),  # type: ignore[arg-type]
            rounds=options.rounds,
            threshold=options.threshold,
        )
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
