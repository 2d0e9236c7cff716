"""Decoded, resized images kept in memory so that no epoch after the first decodes a file again."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.models.backbone import Preprocessing
from transferkit.progress import progress_task

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def decode_resized(
    source: ImageSource,
    indices: Sequence[int],
    preprocessing: Preprocessing,
    on_image: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Decodes, resizes and centre-crops images as timm evaluates; returns uint8 (N, C, size, size).

    The shorter side is resized to ``size / crop_pct``, then the centre ``size`` x ``size`` is kept.
    """
    size = preprocessing.image_size
    images = torch.empty((len(indices), source.channels, size, size), dtype=torch.uint8)
    resample = _RESAMPLING.get(preprocessing.interpolation, Image.Resampling.BICUBIC)
    for row, index in enumerate(indices):
        image = resize_and_crop(source.open(source.records[index]), size, resample, preprocessing.crop_pct)
        array = np.asarray(image, dtype=np.uint8).reshape(size, size, source.channels)
        images[row] = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if on_image is not None:
            on_image()
    return images


def resize_and_crop(
    image: Image.Image, size: int, resample: Image.Resampling, crop_pct: float
) -> Image.Image:
    # As timm: the shorter side becomes floor(size / crop_pct), the longer one keeps the aspect ratio.
    short = math.floor(size / crop_pct)
    width, height = (max(size, int(side * short / min(image.size))) for side in image.size)
    left, top = (width - size) // 2, (height - size) // 2
    return image.resize((width, height), resample).crop((left, top, left + size, top + size))


class CachedImages(Dataset[tuple[torch.Tensor, int]]):
    """Images held as one uint8 tensor, with a per-sample augmentation applied on the fly."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.labels = list(labels)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment is not None:
            image = self.augment(image)
        return image, self.labels[index]


@dataclass(frozen=True)
class SplitImages:
    """One split, decoded: uint8 images (N, C, S, S), labels, and the source records' indices."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: list[int]


def decode_splits(
    source: ImageSource, splits: Splits, preprocessing: Preprocessing
) -> dict[str, SplitImages]:
    """Decodes every split once, with one progress bar; later epochs read only the memory copy."""
    total = sum(len(indices) for _, indices in splits.items())
    decoded = {}
    with progress_task(f"decode {total} images at {preprocessing.image_size} px", total) as advance:
        for name, indices in splits.items():
            images = decode_resized(source, indices, preprocessing, on_image=lambda: advance(1))
            labels = torch.tensor([source.records[i].label for i in indices], dtype=torch.long)
            decoded[name] = SplitImages(images, labels, list(indices))
    return decoded
