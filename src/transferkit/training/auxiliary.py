"""An auxiliary head: a second classifier on the backbone's pooled features, learning another label of
the same images beside the task (multi-task learning), so that the shared features also carry what
tells that label apart (ELPV: a cell's crystal type, which changes how its defects look).

The head starts at zero: its first gradients reach the backbone only as it learns, so the fitted task
head's features are not torn up by a random head's gradients. It trains at the top rate; the label's
exported classifier is a head refit on the final network (`api.auxiliary`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.data.other_labels import MISSING, AuxiliaryLabels


class AuxiliaryHead(nn.Module):
    """Args:
    num_features: the width of the backbone's pooled features.
    labels: the other label, its classes and each image's class.
    weight: the weight of its loss beside the task's.
    """

    def __init__(self, num_features: int, labels: AuxiliaryLabels, weight: float) -> None:
        super().__init__()
        self.labels = labels
        self.weight = weight
        self.linear = nn.Linear(num_features, len(labels.class_names))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted cross-entropy on the images that have the label (zero when none has)."""
        known = targets != MISSING
        if not bool(known.any()):
            return features.sum() * 0.0  # keeps the graph: every step backpropagates the same way
        return self.weight * F.cross_entropy(self(features[known]), targets[known])

    def training_targets(self, split: SplitImages) -> torch.Tensor:
        """The split's task labels beside its auxiliary ones, (N, 2): what each training batch carries."""
        return torch.stack([split.labels, self.labels.of(split.indices)], dim=1)
