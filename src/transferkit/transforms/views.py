"""Test-time views: exact transforms of a batch of uint8 images (N, C, H, W) whose predictions are averaged.

Kept apart from the augmentations (torchvision) so that predicting imports only what it runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ImageTransform = Callable[[torch.Tensor], torch.Tensor]


def identity(images: torch.Tensor) -> torch.Tensor:
    return images


def hflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)


def vflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-2)


def rot180(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-2, -1)


TEST_VIEWS: dict[str, ImageTransform] = {view.__name__: view for view in (identity, hflip, vflip, rot180)}
"""Test-time views by name, as a bundle's config.json lists them."""
