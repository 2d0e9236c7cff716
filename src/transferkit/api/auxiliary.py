"""The auxiliary label's own classifier: the run's final network with a head for the other label, so
that one run predicts both labels.

The head the auxiliary loss trained met the fine-tuned features; the final network may be an
interpolation toward the fitted task head (WiSE-FT). So the other label gets a fresh logistic-regression
head on the final network's frozen features, L2 strength chosen on validation as for the task's head,
calibrated and scored on the test images that carry the label, and saved as a bundle of its own.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

from transferkit.api.cross_validation import subset
from transferkit.api.outputs import evaluate_test, validation_set
from transferkit.api.recipe import Recipe
from transferkit.data.cache import SplitImages
from transferkit.data.other_labels import MISSING, AuxiliaryLabels
from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.models import Backbone
from transferkit.models.ensemble import Ensemble
from transferkit.run_dir import RunPaths
from transferkit.training.head import fit_head
from transferkit.transforms import Normalize

logger = logging.getLogger(__name__)


def fit_auxiliary_task(
    recipe: Recipe, backbone: Backbone, data: dict[str, SplitImages], paths: RunPaths
) -> dict[str, Any] | None:
    """Fits, scores and saves the other label's classifier on `backbone`'s features; returns what
    metrics.json records of it (None without an auxiliary label, or for an ensemble, which has no single
    network to put a head on)."""
    labels = recipe.auxiliary
    if labels is None:
        return None
    if isinstance(backbone.model, Ensemble):
        logger.warning(
            "The ensemble of fold models has no single network: no classifier for %s.", labels.name
        )
        return None
    network = replace(backbone, model=copy.deepcopy(backbone.model))
    network.reset_head(len(labels.class_names))
    train, val, test = (relabelled(data[name], labels) for name in ("train", "val", "test"))
    fit_head(network, Normalize(network.preprocessing), train, val)
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
    return {
        "label": labels.name,
        "classes": labels.class_names,
        "test_images": len(test.labels),
        **metrics,
        "intervals": info.intervals,
        "bundle": str(bundle.relative_to(paths.root)),
    }


def relabelled(split: SplitImages, labels: AuxiliaryLabels) -> SplitImages:
    """The split's images that carry the other label, labelled with it."""
    targets = labels.of(split.indices)
    rows = (targets != MISSING).nonzero().squeeze(1).tolist()
    return replace(subset(split, rows), labels=targets[rows])
