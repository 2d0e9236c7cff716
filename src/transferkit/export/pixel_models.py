"""What runs a fine-tuned network on uint8 pixels: PyTorch, or onnxruntime once it has proved equal.

`CheckedPixelModel` is `CheckedModule` with the classifier's tolerance (onnxruntime is kept when its
probabilities are within `PARITY_ATOL` of PyTorch's on the first images it is given), on numpy arrays
as `Classifier` passes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from transferkit.training.fast_inference import CheckedModule, InferenceChoice
from transferkit.transforms.normalize import Normalize
from transferkit.transforms.preprocessing import Preprocessing

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


class CheckedPixelModel:
    """A `ClassifierNetwork` run by onnxruntime on a CPU once its probabilities match PyTorch's within
    `PARITY_ATOL` on the first batch; by PyTorch otherwise, or when `backend` is "torch". It takes uint8
    pixels (N, C, H, W) and returns float32 logits (N, classes), as numpy arrays. `on_match` receives the
    serialized translation once it has matched.
    """

    def __init__(
        self,
        network: ClassifierNetwork,
        device: torch.device | None = None,
        backend: str = "auto",
        on_match: Callable[[bytes], None] | None = None,
    ) -> None:
        self.checked = CheckedModule(
            network,
            device,
            backend,
            difference=probability_difference,
            tolerance=PARITY_ATOL,
            on_match=on_match,
        )

    @property
    def backend(self) -> str:
        return self.checked.backend

    @property
    def summary(self) -> InferenceChoice:
        return self.checked.summary

    @property
    def translation(self) -> bytes | None:
        return self.checked.translation

    def expect(self, elements: int) -> None:
        self.checked.expect(elements)

    def for_work(self, elements: int) -> Callable[[np.ndarray], np.ndarray]:
        """What runs a job of `elements` input values (`CheckedModule.for_work`)."""
        run = self.checked.for_work(elements)
        return lambda pixels: _on_arrays(run, pixels)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return _on_arrays(self.checked, pixels)


def _on_arrays(run: Callable[[torch.Tensor], torch.Tensor], pixels: np.ndarray) -> np.ndarray:
    return run(torch.from_numpy(np.ascontiguousarray(pixels))).float().numpy()


def probability_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    """Largest difference between the softmax probabilities of two logits (N, classes)."""
    return float((first.softmax(dim=1) - second.softmax(dim=1)).abs().max())
