"""Linear probe: the backbone stays frozen and a logistic-regression head is fitted on its features."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.models.backbone import Backbone
from transferkit.progress import progress_task
from transferkit.strategies.base import FinetuneStrategy, HeadData, Phase, strategies
from transferkit.training.features import extract_features, fit_linear_head

# Candidate L2 strengths; the one with the lowest validation loss wins (cheap on cached features).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_L2 = 1e-3  # when there is no validation split to choose with


@strategies.register("linear-probe")
class LinearProbe(FinetuneStrategy):
    """Frozen features, computed once; the head is solved to convergence in seconds."""

    name = "linear-probe"

    def phases(self) -> list[Phase]:
        return [Phase("head", 0, "logistic-regression head on frozen, cached features (L-BFGS)")]

    def prepare(self, backbone: Backbone, normalize: nn.Module, data: HeadData) -> dict[str, Any]:
        total = len(data.train_images) + len(data.val_images)
        with progress_task("head: frozen features", total) as advance:
            train = extract_features(backbone, normalize, data.train_images, on_batch=advance)
            val = extract_features(backbone, normalize, data.val_images, on_batch=advance)
        num_classes = int(backbone.head().out_features)  # type: ignore[arg-type]
        grid = L2_GRID if len(data.val_labels) else (DEFAULT_L2,)
        candidates = [(l2, *fit_linear_head(train, data.train_labels, num_classes, l2)) for l2 in grid]
        l2, weight, bias = min(candidates, key=lambda c: _loss(val, data.val_labels, c[1], c[2]))
        head = backbone.head()
        with torch.no_grad():
            head.weight.copy_(weight)  # type: ignore[operator]
            head.bias.copy_(bias)  # type: ignore[operator]
        return _head_summary(val, data.val_labels, weight, bias, l2)

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        return []


def _loss(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    return float(F.cross_entropy(features @ weight.T + bias, labels))


def _head_summary(
    features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float
) -> dict[str, Any]:
    summary: dict[str, Any] = {"head_l2": l2}
    if len(labels):
        logits = features @ weight.T + bias
        summary["val_loss"] = float(F.cross_entropy(logits, labels))
        summary["val_accuracy"] = float((logits.argmax(1) == labels).float().mean())
    return summary
