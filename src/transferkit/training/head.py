"""The head most strategies start from: a logistic regression on frozen features (L-BFGS, seconds)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.models.backbone import Backbone
from transferkit.progress import progress_task
from transferkit.training.features import extract_features, fit_linear_head

# Candidate L2 strengths; the one with the lowest validation loss wins (cheap on cached features).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_L2 = 1e-3  # when there is no validation split to choose with


def fit_head(
    backbone: Backbone, normalize: nn.Module, train: SplitImages, val: SplitImages
) -> dict[str, Any]:
    """Fits the head as a logistic regression on frozen features; L2 strength chosen on validation."""
    with progress_task("head: frozen features", len(train.images) + len(val.images)) as advance:
        train_features = extract_features(backbone, normalize, train.images, on_batch=advance)
        val_features = extract_features(backbone, normalize, val.images, on_batch=advance)
    num_classes = int(backbone.head().out_features)  # type: ignore[arg-type]
    grid = L2_GRID if len(val.labels) else (DEFAULT_L2,)
    heads = {l2: fit_linear_head(train_features, train.labels, num_classes, l2) for l2 in grid}
    scores = {l2: _score(val_features, val.labels, *head) for l2, head in heads.items()}
    best = min(scores, key=lambda l2: scores[l2].get("val_loss", 0.0))
    head = backbone.head()
    with torch.no_grad():
        head.weight.copy_(heads[best][0])  # type: ignore[operator]
        head.bias.copy_(heads[best][1])  # type: ignore[operator]
    return {"head_l2": best, **scores[best]}


def _score(
    features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> dict[str, float]:
    """Validation loss and accuracy of a linear head; empty when there is no validation split."""
    if not len(labels):
        return {}
    logits = features @ weight.T + bias
    return {
        "val_loss": float(F.cross_entropy(logits, labels)),
        "val_accuracy": float((logits.argmax(1) == labels).float().mean()),
    }
