"""The linear-probe race: a second opinion on the scores from logistic regression on cached features."""

from __future__ import annotations

import torch

from transferkit.training.features import fit_linear_head

# One L2 strength for every candidate: the race compares models, so none gets its own tuning.
# Features are standardised first, so the same strength means the same thing for every model.
RACE_L2 = 1e-3


def race_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    val: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
) -> float:
    """Validation accuracy of a logistic-regression head fitted on standardised training features.

    Shape:
        train: (N, D); train_labels: (N,); val: (M, D); val_labels: (M,).
    """
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    weight, bias = fit_linear_head((train - mean) / std, train_labels, num_classes, RACE_L2)
    predicted = (((val - mean) / std) @ weight.T + bias).argmax(dim=1)
    return float((predicted == val_labels).float().mean())
