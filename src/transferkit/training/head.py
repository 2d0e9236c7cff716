"""The head most strategies start from: a logistic regression on frozen features (L-BFGS, seconds), or
for ordered classes a cumulative-link model."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from transferkit.data.cache import SplitImages
from transferkit.models.backbone import Backbone
from transferkit.models.ordinal import CumulativeLinkHead
from transferkit.progress import progress_task
from transferkit.training.features import extract_feature_sets, fit_linear_head, fit_ordinal_head

# Candidate L2 strengths; the one with the lowest validation loss wins (cheap on cached features).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_L2 = 1e-3  # when there is no validation split to choose with


def fit_head(
    backbone: Backbone, normalize: nn.Module, train: SplitImages, val: SplitImages
) -> dict[str, Any]:
    """Fits the head on frozen features, L2 strength chosen on validation: a logistic regression, or a
    cumulative-link model for an ordinal head."""
    with progress_task("head: frozen features", len(train.images) + len(val.images)) as advance:
        train_features, val_features = extract_feature_sets(
            backbone, normalize, [train.images, val.images], on_batch=advance
        )
    head = backbone.head()
    grid = L2_GRID if len(val.labels) else (DEFAULT_L2,)
    heads: dict[float, dict[str, torch.Tensor]] = {}
    previous = None
    for l2 in sorted(grid, reverse=True):  # each fit starts from the more regularized one's solution
        heads[l2] = previous = _fit(head, train_features, train.labels, l2, start=previous)
    scores = {l2: _score(head, val_features, val.labels, heads[l2]) for l2 in grid}
    best = min(scores, key=lambda l2: scores[l2].get("val_loss", 0.0))
    with torch.no_grad():
        head.load_state_dict(heads[best])
    return {"head_l2": best, **scores[best]}


def _fit(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    l2: float,
    start: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The head's fitted parameters, by name; a linear head starts from `start` when given (the same
    optimum, reached in about half the L-BFGS steps along the L2 grid, or approached more closely where
    the steps run out)."""
    if isinstance(head, CumulativeLinkHead):
        return fit_ordinal_head(features, labels, head.out_features, l2)
    initial = (start["weight"], start["bias"]) if start else None
    classes = int(head.out_features)  # type: ignore[arg-type]
    weight, bias = fit_linear_head(features, labels, classes, l2, start=initial)
    return {"weight": weight, "bias": bias}


def _score(
    head: nn.Module, features: torch.Tensor, labels: torch.Tensor, parameters: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Validation loss and accuracy of the head with `parameters`; empty when there is no validation split."""
    if not len(labels):
        return {}
    with torch.no_grad():
        logits = functional_call(head, parameters, (features,))
    return {
        "val_loss": float(F.cross_entropy(logits, labels)),
        "val_accuracy": float((logits.argmax(1) == labels).float().mean()),
    }
