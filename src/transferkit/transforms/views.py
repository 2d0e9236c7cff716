"""Test-time views: exact transforms of a batch of uint8 images (N, C, H, W) whose predictions are averaged.

They act on numpy arrays, as the classifier passes images to its network, and are kept apart from the
augmentations (torchvision) so that predicting imports only what it runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ImageView = Callable[[np.ndarray], np.ndarray]


def identity(images: np.ndarray) -> np.ndarray:
    return images


def hflip(images: np.ndarray) -> np.ndarray:
    return np.flip(images, -1)


def vflip(images: np.ndarray) -> np.ndarray:
    return np.flip(images, -2)


def rot180(images: np.ndarray) -> np.ndarray:
    return np.flip(images, (-2, -1))


TEST_VIEWS: dict[str, ImageView] = {view.__name__: view for view in (identity, hflip, vflip, rot180)}
"""Test-time views by name, as a bundle's config.json lists them."""
