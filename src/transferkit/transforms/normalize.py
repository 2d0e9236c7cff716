"""The model's input normalization, as a module so it travels with the weights' preprocessing config."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.transforms.preprocessing import Preprocessing


class Normalize(nn.Module):
    """uint8 or [0, 1] images with 1 or C channels -> float, normalized with the weights' mean and std.

    Shape:
        input: (N, 1 or C, H, W), uint8 or float in [0, 1].
        output: (N, C, H, W), float32, channels-last memory (faster convolutions on CPU).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        shape = (1, preprocessing.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(shape), persistent=False)
        self.channels = preprocessing.channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # (x / 255 - mean) / std as one multiply-add; uint8 is scaled by 255 more.
        scale = 1.0 / (255.0 * self.std) if images.dtype == torch.uint8 else 1.0 / self.std
        offset = -self.mean / self.std
        if images.shape[1] != self.channels:
            # Grayscale data into an RGB network: the same intensity on every channel.
            images = images.expand(-1, self.channels, -1, -1)
        images = torch.addcmul(offset, images.float(), scale)
        return images.contiguous(memory_format=torch.channels_last)
