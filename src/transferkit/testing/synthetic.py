"""Synthetic image folders whose classes a tiny network can learn in one epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.config import FitConfig

# Each class is a distinct colour and stripe direction, so even a random-init network separates them.
_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (180, 60, 200))


def make_image_folder(
    root: str | Path,
    *,
    classes: Sequence[str] = ("cat", "dog", "fox"),
    per_class: int = 12,
    size: int = 40,
    splits: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Writes ``root/<class>/<n>.png`` (or ``root/<split>/<class>/<n>.png`` for each of `splits`)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in splits or ("",):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                _class_image(index, size, rng).save(folder / f"{name}_{n:03d}.png")
    return root


def _class_image(index: int, size: int, rng: np.random.Generator) -> Image.Image:
    colour = np.array(_COLOURS[index % len(_COLOURS)], dtype=np.float64)
    stripes = (np.arange(size) // 4 % 2).astype(np.float64)
    pattern = stripes[None, :] if index % 2 else stripes[:, None]
    image = colour * (0.6 + 0.4 * pattern)[..., None] + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB")


def tiny_fit_config(data: str | Path, out: str | Path, epochs: int = 1) -> FitConfig:
    """A config that runs in seconds on a CPU: timm's random-init `test_efficientnet` at 32 px."""
    return FitConfig().with_overrides(
        {
            "model.name": "timm:test_efficientnet",
            "model.pretrained": False,
            "data.name": str(data),
            "data.val_fraction": 0.2,
            "preprocess.image_size": 32,
            "train.epochs": epochs,
            "train.batch_size": 8,
            "cv.folds": None,  # a few images: cross-validation would train six models, not one
            "out": str(out),
        }
    )
