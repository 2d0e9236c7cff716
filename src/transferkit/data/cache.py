"""Decoded, resized images kept in memory, and on disk between runs, so a file is decoded only once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transferkit.data.source import ImageRecord, ImageSource
from transferkit.data.splits import UNLABELED, Splits
from transferkit.data.threads import map_in_threads
from transferkit.files import cache_root, sha256_of_file
from transferkit.progress import progress_task

_CACHE_FORMAT = 3  # bump when decoding or resizing changes, so old cache files are not reused


class Resize(Protocol):
    """How decoded images become pixels of one size (`transforms.Preprocessing` is one): data knows
    images, never the model they are resized for."""

    @property
    def image_size(self) -> int: ...

    @property
    def scaled_size(self) -> int:
        """The size images are scaled to before the crop: they need not be decoded larger."""
        ...

    def resize(self, image: Image.Image) -> np.ndarray:
        """uint8 (channels, image_size, image_size)."""
        ...

    def resize_key(self) -> str:
        """Everything `resize` depends on, for naming cached pixels."""
        ...


def decode_resized(
    source: ImageSource,
    indices: Sequence[int],
    resize: Resize,
    on_image: Callable[[], None] | None = None,
    out: np.ndarray | None = None,
) -> torch.Tensor:
    """Decodes and resizes images; returns uint8 (N, C, size, size).

    `out`, when given, is the array to fill (e.g. a memory-mapped cache file).
    """
    size = resize.image_size
    if out is None:
        out = np.empty((len(indices), source.channels, size, size), dtype=np.uint8)

    def decode(row: int) -> None:
        record = source.records[indices[row]]
        out[row] = resize.resize(source.open(record, resized_to=resize.scaled_size))

    for _ in map_in_threads(decode, range(len(indices))):
        if on_image is not None:
            on_image()
    return torch.from_numpy(out)


class CachedImages(Dataset[tuple[torch.Tensor, "int | torch.Tensor"]]):
    """Images held as one uint8 tensor, with a per-sample augmentation applied on the fly; a label is a
    class, or a row of classes (the task's and an auxiliary label's)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: Sequence[int | torch.Tensor],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.labels = list(labels)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
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
    source: ImageSource,
    splits: Splits,
    resize: Resize,
    cache: DiskCache | None = None,
    *,
    unlabeled: bool = False,
) -> dict[str, SplitImages]:
    """Decodes every split once, with one progress bar; later epochs read only the decoded copy.

    With a `cache`, a split that an earlier run decoded from the same file contents at the same
    preprocessing is memory-mapped from disk instead, and a newly decoded split is stored there.
    With `unlabeled`, the unlabeled pool is decoded too, as split "unlabeled" (its labels are -1, or
    the labels a label budget hid: for measuring pseudo-labels only, never for training).
    """
    named = [*splits.items(), *([(UNLABELED, splits.unlabeled)] if unlabeled else [])]
    keys = {name: cache.key(source, indices, resize) for name, indices in named} if cache else {}
    arrays = {name: hit for name, key in keys.items() if cache and (hit := cache.load(key)) is not None}
    pending = [(name, indices) for name, indices in named if name not in arrays]
    total = sum(len(indices) for _, indices in pending)
    with (
        nullcontext(lambda _: None)
        if not total
        else progress_task(f"decode {total} images at {resize.image_size} px", total) as advance
    ):
        for name, indices in pending:
            shape = (len(indices), source.channels, resize.image_size, resize.image_size)

            def fill(out: np.ndarray, indices: list[int] = indices) -> None:
                decode_resized(source, indices, resize, on_image=lambda: advance(1), out=out)

            arrays[name] = cache.store(keys[name], shape, fill) if cache else _in_memory(shape, fill)
    labels = {name: [source.records[i].label for i in indices] for name, indices in named}
    return {
        name: SplitImages(arrays[name], torch.tensor(labels[name], dtype=torch.long), list(indices))
        for name, indices in named
    }


def _in_memory(shape: tuple[int, ...], fill: Callable[[np.ndarray], None]) -> torch.Tensor:
    out = np.empty(shape, dtype=np.uint8)
    fill(out)
    return torch.from_numpy(out)


@dataclass(frozen=True)
class DiskCache:
    """Decoded splits as .npy files named by a hash of their images' contents and the preprocessing.

    A file is written under a temporary name and renamed when complete, so an interrupted run never
    leaves a partial array behind. Reading maps it copy-on-write: a set larger than memory still works,
    the operating system keeps what fits in memory, and the cache file itself is never modified.
    """

    root: Path

    @classmethod
    def default(cls) -> DiskCache:
        """``$TRANSFERKIT_CACHE/images``, else ``~/.cache/transferkit/images``."""
        return cls(cache_root() / "images")

    def key(self, source: ImageSource, indices: Sequence[int], resize: Resize) -> str:
        digest = hashlib.sha256(f"{_CACHE_FORMAT}\n{resize.resize_key()} {source.channels}\n".encode())
        for index in indices:
            digest.update(f"{content_key(source.records[index])}\n".encode())
        return digest.hexdigest()

    def load(self, key: str) -> torch.Tensor | None:
        path = self.root / f"{key}.npy"
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, mmap_mode="c"))
        except (OSError, ValueError):  # unreadable: the caller decodes again and replaces it
            return None

    def store(self, key: str, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]) -> torch.Tensor:
        """Fills a new cache file through `fill` and returns it, memory-mapped."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".{key}.{os.getpid()}.npy"
        try:
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
            fill(out)
            out.flush()
            del out
            os.replace(temporary, self.root / f"{key}.npy")
        finally:
            temporary.unlink(missing_ok=True)
        return torch.from_numpy(np.load(self.root / f"{key}.npy", mmap_mode="c"))


def content_key(record: ImageRecord) -> str:
    """A file's SHA-256; records without a file are named by their stable reference."""
    return sha256_of_file(record.path) if Path(record.path).is_file() else f"ref:{record.path}"
