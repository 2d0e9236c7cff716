"""Augmentation presets on cached uint8 image tensors (C, H, W), with their test-time views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from transferkit import catalog
from transferkit.registry import Registry
from transferkit.transforms.views import D4_VIEWS, ImageView, hflip, identity

ImageTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AugmentPreset:
    """A training augmentation and the deterministic views averaged at test time.

    Attributes:
        name: the preset's name in configs.
        train: applied to each training image (uint8, C x H x W), or None.
        tta_views: deterministic transforms of a whole batch (N x C x H x W) whose predictions are
            averaged; they must be invariances the training augmentation taught the model.
    """

    name: str
    train: ImageTransform | None
    tta_views: tuple[ImageView, ...]


augment_presets: Registry[Callable[[int], AugmentPreset]] = catalog.augment_presets


@dataclass(frozen=True)
class FiniteAugment:
    """An augmentation that applies one of `views` exact transforms, drawn at random per image.

    Because the views are few and exact, the outputs of frozen layers can be computed once per view and
    image, and training then draws a view's cached outputs with the very same random draws
    (`training.prefix_cache`).

    Attributes:
        views: how many transforms there are.
        draw: the index of one, from torch's global generator.
        apply: view `index` of images (..., H, W).
    """

    views: int
    draw: Callable[[], int]
    apply: Callable[[torch.Tensor, int], torch.Tensor]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.apply(image, self.draw())


def draw_d4() -> int:
    """A quarter-turn count (0-3), plus 4 when mirrored: one of the 8 symmetries of the square."""
    turns = int(torch.randint(4, ()))
    return turns + 4 * bool(torch.rand(()) < 0.5)


def d4_view(images: torch.Tensor, index: int) -> torch.Tensor:
    """Symmetry `index` of `draw_d4`: `index % 4` quarter turns, then a mirror when `index >= 4`."""
    images = torch.rot90(images, index % 4, dims=(-2, -1))
    return images.flip(-1) if index >= 4 else images


random_d4 = FiniteAugment(8, draw_d4, d4_view)
"""One of the 8 symmetries of the square: a random quarter turn, then a random mirror."""


@augment_presets.register("none")
def no_augmentation(image_size: int) -> AugmentPreset:
    return AugmentPreset("none", None, (identity,))


@augment_presets.register("crop")
def crop_augmentation(image_size: int) -> AugmentPreset:
    """Random resized crops of 80 to 100 % of the image; no flips, for images with a handedness."""
    crop = v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True)
    return AugmentPreset("crop", crop, (identity,))


@augment_presets.register("light")
def light_augmentation(image_size: int) -> AugmentPreset:
    """Random resized crops and horizontal flips: the usual choice for photos."""
    train = v2.Compose(
        [v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    )
    return AugmentPreset("light", train, (identity, hflip))


@augment_presets.register("d4")
def d4_augmentation(image_size: int) -> AugmentPreset:
    """Quarter turns and mirrors, for images with no natural orientation (solar cells, micrographs).

    Test time averages all 8 symmetries the model trained on. Out of fold on ELPV's 1,968 train images
    (the default's 5 fold models, benchmarks/results/elpv_test_views.md), the 8 views classified 32
    images right that the image, its two mirrors and its half turn had wrong, and 18 the other way: 4-class
    accuracy 80.0 against 79.3 % (paired bootstrap interval of the gain 0.05 to 1.4 points), for twice the
    test-time passes.
    """
    return AugmentPreset("d4", random_d4, D4_VIEWS)


def create_augmentation(name: str, image_size: int) -> AugmentPreset:
    return augment_presets.get(name)(image_size)
