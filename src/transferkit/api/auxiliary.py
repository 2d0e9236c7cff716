"""The auxiliary label's own classifier: the run's final network with a head for the other label, so
that one run predicts both labels.

The head the auxiliary loss trained met the fine-tuned features; the final network may be an
interpolation toward the fitted task head (WiSE-FT). So the other label gets a fresh logistic-regression
head on the final network's frozen features, L2 strength chosen on validation as for the task's head,
calibrated and scored on the test images that carry the label. The head joins the run's bundle (one
network predicts both labels in one pass), and the network with this head alone is saved as a bundle of
its own (a single-label model for timm, ONNX, or the next transfer).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any, NamedTuple

from torch import nn

from transferkit.api.cross_validation import subset
from transferkit.api.outputs import evaluate_test, validation_set
from transferkit.api.recipe import Recipe
from transferkit.data.cache import SplitImages
from transferkit.data.other_labels import MISSING, AuxiliaryLabels
from transferkit.export.bundle import BundleInfo, OtherTask, save_bundle
from transferkit.models import Backbone
from transferkit.models.ensemble import networks
from transferkit.run_dir import RunPaths
from transferkit.training.head import fit_head
from transferkit.transforms import Normalize

logger = logging.getLogger(__name__)


class AuxiliaryTask(NamedTuple):
    record: dict[str, Any]  # what metrics.json records of it
    task: OtherTask  # its head, calibrated, for the run's bundle


def fit_auxiliary_task(
    recipe: Recipe, backbone: Backbone, data: dict[str, SplitImages], paths: RunPaths
) -> AuxiliaryTask | None:
    """Fits, scores and saves the other label's classifier on `backbone`'s features (None without an
    auxiliary label). An ensemble's members each get a head on their own features, and the ensemble
    averages their probabilities of the other label as it does the task's."""
    labels = recipe.auxiliary
    if labels is None:
        return None
    network = replace(backbone, model=copy.deepcopy(backbone.model))
    train, val, test = (relabelled(data[name], labels) for name in ("train", "val", "test"))
    members = [replace(network, model=member) for member in networks(network.model)]
    for member in members:  # each member's head replaced in place, inside the ensemble's copy
        member.reset_head(len(labels.class_names))
        fit_head(member, Normalize(network.preprocessing), train, val)
    source = replace(recipe.source, class_names=labels.class_names, groupings=(), ordered=False, notes=[])
    classifier = replace(recipe, source=source).classifier(network)
    evaluation = evaluate_test(classifier, source, test, validation_set(classifier, val))
    metrics = {name: evaluation.metrics[name] for name in ("accuracy", "balanced_accuracy")}
    info = BundleInfo(
        labels.class_names,
        metrics,
        f"{recipe.config.data.name} ({labels.name})",
        evaluation.views,
        source.channels,
        temperature=evaluation.temperature,
        intervals={name: evaluation.metrics.get("intervals", {}).get(name) for name in metrics},
        test_images=len(test.labels),
    )
    bundle = save_bundle(network, info, paths.task_model(labels.name), onnx=evaluation.translation)
    record = {
        "label": labels.name,
        "classes": labels.class_names,
        "test_images": len(test.labels),
        **metrics,
        "intervals": info.intervals,
        "bundle": str(bundle.relative_to(paths.root)),
    }
    heads = [head for head in (member.head() for member in members) if isinstance(head, nn.Linear)]
    assert len(heads) == len(members), "fit_head fits a linear head"
    task = OtherTask(labels.name, labels.class_names, heads, evaluation.temperature, metrics)
    return AuxiliaryTask(record, task)


def relabelled(split: SplitImages, labels: AuxiliaryLabels) -> SplitImages:
    """The split's images that carry the other label, labelled with it."""
    targets = labels.of(split.indices)
    rows = (targets != MISSING).nonzero().squeeze(1).tolist()
    return replace(subset(split, rows), labels=targets[rows])
