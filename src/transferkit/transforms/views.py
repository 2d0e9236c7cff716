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


# The quarter turns and the diagonal mirrors need square images, as the network's input always is.
def rot90(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, 1, axes=(-2, -1))


def rot270(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, 3, axes=(-2, -1))


def transpose(images: np.ndarray) -> np.ndarray:
    """The mirror across the main diagonal."""
    return np.swapaxes(images, -2, -1)


def transverse(images: np.ndarray) -> np.ndarray:
    """The mirror across the other diagonal."""
    return np.flip(np.swapaxes(images, -2, -1), (-2, -1))


D4_VIEWS = (identity, hflip, vflip, rot180, rot90, rot270, transpose, transverse)
"""The 8 symmetries of the square."""

TEST_VIEWS: dict[str, ImageView] = {view.__name__: view for view in D4_VIEWS}
"""Test-time views by name, as a bundle's config.json lists them."""
