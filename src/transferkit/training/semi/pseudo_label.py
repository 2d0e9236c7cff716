"""Pseudo-label self-training on frozen features: cheap enough for a CPU, several rounds in seconds.

Each round fits a linear head on the labeled images plus the pseudo-labeled ones so far, then labels
the pool: per class, the images predicted as that class with at least `threshold` confidence, most
confident first, up to the class's share of a growing part of the pool (round r of R: r / R of it,
shared out by the labeled class frequencies, so one class cannot swamp the others). The last round's
selection joins the training set of whatever strategy follows. (Quotas from the pool's class
frequencies as estimated from the head's predictions, by the EM of Saerens et al. 2002, raised the
ungated test gain on ELPV with a balanced budget of labels but lowered it on digits, and the gated gain
overall: benchmarks/results/pool_gate_pool_prior.md.)

A pool can hurt: when the features do not separate the classes, confident pseudo-labels are confidently
wrong. So before they are used, the gate measures them: the labeled images (train and validation) are
dealt into folds, self-training is redone without each held-out fold, and a head trained with that
fold's pseudo-labels must classify more of the held-out images right than one trained without them.
Otherwise the pool is left out, and the report says so. The labeled images are the same in every
cross-validation fold of a run (train and validation together), so the gate is measured once per run
and reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
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
                f"{gate['with_pool']:.1%} with them (standard error of the paired difference "
                f"{gate.get('standard_error', 0.0):.1%}); the pool was {verdict}."
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
    """Out-of-fold accuracy on the labeled images of a head trained without and with pseudo-labels, and
    the standard error of their per-image (paired) difference."""

    without: float
    with_pool: float
    standard_error: float
    folds: int
    images: int

    @property
    def open(self) -> bool:
        """The pool is used when it helps out of fold at all. Over 10 draws of the labeled images in
        each of 6 settings (benchmarks/results/pool_gate.md), a margin of one standard error left out
        10 more digits pools, each of which raised test accuracy, and 6 more ELPV pools, 3 of which
        lowered it: its gated test gain, summed over the settings, was 4.0 points against 6.6."""
        return self.with_pool > self.without

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": self.open}


def head_accuracy(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
) -> float | None:
    """The share of `features` a linear head classifies as `labels`; None when there are none."""
    if not len(labels):
        return None
    return float(((features @ weight.T + bias).argmax(1) == labels).float().mean())


def known_accuracy(truth: torch.Tensor, predicted: torch.Tensor) -> float | None:
    """The share of `predicted` equal to `truth` where the truth is known (not -1); None if nowhere."""
    known = truth >= 0
    return float((truth[known] == predicted[known]).float().mean()) if known.any() else None


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
        pseudo_accuracy = known_accuracy(pool_true[chosen], y[len(train_y) :])
        result.rounds.append(
            {
                "round": number - 1,
                "pseudo_labels": len(result.positions),
                "pseudo_label_accuracy": pseudo_accuracy,
                "val_accuracy": head_accuracy(weight, bias, val_x, val_y),
            }
        )
        probabilities = (pool_x @ weight.T + bias).softmax(1)
        quotas = (prior * len(pool_x) * number / rounds).ceil().long().tolist()  # a growing curriculum
        result.positions, result.labels = select(probabilities, quotas, threshold)
    return result


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
    splitter = StratifiedKFold(folds, shuffle=True, random_state=GATE_SEED)
    nothing = (x[:0], y[:0])
    unknown = torch.full((len(pool_x),), -1, dtype=torch.long)
    right_without = torch.zeros(len(y))
    right_with = torch.zeros(len(y))
    for kept_rows, held_rows in splitter.split(np.zeros(len(y)), y.numpy()):
        held, kept = torch.from_numpy(held_rows), torch.from_numpy(kept_rows)
        inner = (x[kept], y[kept])
        chosen = self_train(
            inner, nothing, (pool_x, unknown), num_classes=num_classes, rounds=rounds, threshold=threshold
        )
        right_without[held] = _right(fit_linear_head(*inner, num_classes, L2), x[held], y[held])
        pseudo = (
            torch.tensor(chosen.positions, dtype=torch.long),
            torch.tensor(chosen.labels, dtype=torch.long),
        )
        enlarged = (torch.cat([inner[0], pool_x[pseudo[0]]]), torch.cat([inner[1], pseudo[1]]))
        right_with[held] = _right(fit_linear_head(*enlarged, num_classes, L2), x[held], y[held])
        if on_fold is not None:
            on_fold(1)
    difference = right_with - right_without
    standard_error = float(difference.std() / len(y) ** 0.5)
    return PoolGate(float(right_without.mean()), float(right_with.mean()), standard_error, folds, len(y))


def gate_folds(labels: torch.Tensor) -> int:
    """`GATE_FOLDS`, or fewer when the smallest labeled class cannot fill them."""
    counts = torch.bincount(labels)
    return min(GATE_FOLDS, int(counts[counts > 0].min()))


def _right(
    head: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """1.0 for each image the head classifies right, else 0.0."""
    weight, bias = head
    return ((features @ weight.T + bias).argmax(1) == labels).float()


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
    return with_pseudo_labels(data, labels), labels


def with_pseudo_labels(data: Splits, labels: PseudoLabels) -> Splits:
    """The splits with the chosen pool images, under their pseudo-labels, added to train."""
    pool, train = data[UNLABELED], data["train"]
    chosen = torch.tensor(labels.positions, dtype=torch.long)
    enlarged = SplitImages(
        torch.cat([train.images, pool.images[chosen]]),
        torch.cat([train.labels, torch.tensor(labels.labels, dtype=torch.long)]),
        [*train.indices, *(pool.indices[i] for i in labels.positions)],
    )
    return {**data, "train": enlarged}


_measured_gates: dict[str, PoolGate | None] = {}  # by `_fingerprint`: reused by a run's later folds


def _fingerprint(*parts: torch.Tensor | float) -> str:
    """A digest of the gate's inputs: the same labeled and pool features give the same gate."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.contiguous().numpy().tobytes() if isinstance(part, torch.Tensor) else repr(part).encode()
        digest.update(data)
    return digest.hexdigest()


def gated(
    labels: PseudoLabels,
    features: dict[str, torch.Tensor],
    data: dict[str, SplitImages],
    num_classes: int,
    options: PseudoLabelOptions,
) -> PseudoLabels:
    """`labels` with the gate's measurement, and no pseudo-labels when the gate stays shut."""
    indices = torch.tensor([*data["train"].indices, *data["val"].indices])
    order = indices.argsort()  # a fold of cross-validation or the final fit: the same images, same deal
    labeled = (
        torch.cat([features["train"], features["val"]])[order],
        torch.cat([data["train"].labels, data["val"].labels])[order],
    )
    key = _fingerprint(labeled[0], labeled[1], features[UNLABELED], options.rounds, options.threshold)
    if key not in _measured_gates:
        with progress_task("pseudo-labels: gate folds", gate_folds(labeled[1])) as step:
            _measured_gates[key] = pool_gate(
                labeled,
                features[UNLABELED],
                num_classes=num_classes,
                rounds=options.rounds,
                threshold=options.threshold,
                on_fold=step,
            )
    gate = _measured_gates[key]
    if gate is None:
        logger.warning(
            "too few labeled images per class to gate the pool; the pseudo-labels are used unmeasured"
        )
        return labels
    if not gate.open:
        logger.warning(
            "pseudo-labels do not raise the out-of-fold accuracy of a head on the labeled images "
            "(%.1f%% -> %.1f%%, standard error %.1f%%): the pool is not used",
            100 * gate.without,
            100 * gate.with_pool,
            100 * gate.standard_error,
        )
        return PseudoLabels([], [], labels.rounds, gate.to_dict())
    return PseudoLabels(labels.positions, labels.labels, labels.rounds, gate.to_dict())
