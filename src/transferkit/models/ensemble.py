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

    Shape:
        input: (N, C, H, W), normalized images.
        output: (N, classes), ``log(mean_m softmax(member_m(x)))``: a softmax of it gives the mean of the
            members' probabilities, and a temperature divides it as it divides logits.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack([member(images).float().log_softmax(1) for member in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))

    def reset_classifier(self, *args: Any, **kwargs: Any) -> None:
        raise ModelError(
            "An ensemble bundle predicts; it is not the start of another transfer. Fine-tune from a run "
            "with cv.final: refit, or from the packaged model."
        )
