"""Convolutions whose kernel is larger than their input pad it themselves while training.

On a CPU, the backward pass of a padded convolution whose feature map is smaller than its kernel takes
a slow path: a 5x5 depthwise convolution on EfficientNet-Lite0's 3x3 last stage (96 px images) costs
about 16 ms against 4 ms when the same zeros are added by an explicit pad first. The default fine-tune
trains 1.2x faster at 96 px and 1.4x at 64 px this way (benchmarks/results/small_maps.md). The result
is the same convolution; only the kernel PyTorch picks differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class ExplicitlyPaddedConv2d(nn.Conv2d):
    """A `nn.Conv2d` that, when gradients are on and its input is smaller than its kernel, pads the
    input with zeros before convolving without padding (the same result, a faster backward)."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        pads = explicit_pads(self, input)
        if pads is None:
            return super()._conv_forward(input, weight, bias)
        return F.conv2d(F.pad(input, pads), weight, bias, self.stride, 0, self.dilation, self.groups)


def explicit_pads(conv: nn.Conv2d, input: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The zeros to add around `input` (left, right, top, bottom) when `conv` pads an input smaller
    than its kernel while gradients are recorded; else None."""
    if not torch.is_grad_enabled() or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    (kernel_h, kernel_w), (pad_h, pad_w) = conv.kernel_size, conv.padding
    smaller = input.shape[-2] < kernel_h or input.shape[-1] < kernel_w
    return (pad_w, pad_w, pad_h, pad_h) if smaller and (pad_h or pad_w) else None


@contextmanager
def explicit_padding(model: nn.Module) -> Iterator[None]:
    """Inside the block, the model's plain `nn.Conv2d` layers are `ExplicitlyPaddedConv2d`.

    The class is swapped in place, so parameters, their identity (the optimizer's groups) and the
    state dict are untouched; the layers are plain again afterwards (export and inference see the
    network as built).
    """
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    for conv in convs:
        conv.__class__ = ExplicitlyPaddedConv2d
    try:
        yield
    finally:
        for conv in convs:
            conv.__class__ = nn.Conv2d
