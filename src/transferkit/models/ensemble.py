"""Several trained networks of one architecture as one: the mean of their class probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from transferkit.errors import ModelError


class Ensemble(nn.Module):
    """The cross-validation fold models of a run, predicting together (one ONNX graph when exported).

    Members that predict several labels side by side (`models.task_heads`) give `segments`, the number
    of classes of each label in order; each label is averaged on its own.

    Shape:
        input: (N, C, H, W), normalized images.
        output: (N, classes), ``log(mean_m softmax(member_m(x)))`` per label: a softmax of it gives the
            mean of the members' probabilities, and a temperature divides it as it divides logits.
    """

    def __init__(self, members: Sequence[nn.Module], segments: Sequence[int] = ()) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.segments = tuple(segments)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack(
            [self._log_softmax(member(images).float()) for member in self.members]
        )
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))

    def _log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.segments:
            return logits.log_softmax(1)
        return torch.cat([part.log_softmax(1) for part in logits.split(list(self.segments), dim=1)], dim=1)

    @property
    def num_features(self) -> int:
        """The pooled features of each member (they share one architecture)."""
        return int(self.members[0].num_features)  # type: ignore[arg-type]

    def reset_classifier(self, *args: Any, **kwargs: Any) -> None:
        raise ModelError(
            "An ensemble bundle predicts; it is not the start of another transfer. Fine-tune from a run "
            "with cv.final: refit, or from the packaged model."
        )


def networks(model: nn.Module) -> list[nn.Module]:
    """The networks `model` is made of: an ensemble's members, else the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]
