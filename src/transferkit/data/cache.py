"""Decoded, resized images kept in memory so that no epoch after the first decodes a file again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
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
    size: int,
    interpolation: str = "bicubic",
    on_image: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Decodes and resizes the whole image (no crop) to size x size; returns uint8 (N, C, size, size)."""
    images = torch.empty((len(indices), source.channels, size, size), dtype=torch.uint8)
    resample = _RESAMPLING.get(interpolation, Image.Resampling.BICUBIC)
    for row, index in enumerate(indices):
        image = source.open(source.records[index]).resize((size, size), resample)
        array = np.asarray(image, dtype=np.uint8).reshape(size, size, source.channels)
        images[row] = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if on_image is not None:
            on_image()
    return images


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
    source: ImageSource, splits: Splits, size: int, interpolation: str
) -> dict[str, SplitImages]:
    """Decodes every split once, with one progress bar; later epochs read only the memory copy."""
    total = sum(len(indices) for _, indices in splits.items())
    decoded = {}
    with progress_task(f"decode {total} images at {size} px", total) as advance:
        for name, indices in splits.items():
            images = decode_resized(source, indices, size, interpolation, on_image=lambda: advance(1))
            labels = torch.tensor([source.records[i].label for i in indices], dtype=torch.long)
            decoded[name] = SplitImages(images, labels, list(indices))
    return decoded
