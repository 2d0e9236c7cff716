"""What runs a fine-tuned classifier on uint8 pixels: PyTorch, or onnxruntime once it has proved equal.

`CheckedPixelModel` is `CheckedModule` with the classifier's tolerance: onnxruntime is kept when its
probabilities are within `PARITY_ATOL` of PyTorch's on the first images it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import torch
from torch import nn

from transferkit.training.fast_inference import CheckedModule
from transferkit.transforms.normalize import Normalize
from transferkit.transforms.preprocessing import Preprocessing

PixelModel: TypeAlias = Callable[[torch.Tensor], torch.Tensor]
"""uint8 pixels (N, C, H, W), resized and cropped -> logits (N, classes) on the CPU."""

PARITY_ATOL = 1e-4  # largest difference of a probability between onnxruntime and PyTorch


class ClassifierNetwork(nn.Module):
    """Normalization and the fine-tuned network in one module: what `Classifier` runs and ONNX exports.

    Shape:
        input: uint8 (N, C, H, W) pixels after the resize and centre crop.
        output: logits (N, classes).
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.normalize = Normalize(preprocessing)
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(pixels))


class CheckedPixelModel(CheckedModule):
    """A `ClassifierNetwork` run by onnxruntime on a CPU once its probabilities match PyTorch's within
    `PARITY_ATOL` on the first batch; by PyTorch otherwise, or when `backend` is "torch"."""

    def __init__(
        self, network: ClassifierNetwork, device: torch.device | None = None, backend: str = "auto"
    ) -> None:
        super().__init__(network, device, backend, difference=probability_difference, tolerance=PARITY_ATOL)


def probability_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    """Largest difference between the softmax probabilities of two logits (N, classes)."""
    return float((first.softmax(dim=1) - second.softmax(dim=1)).abs().max())
