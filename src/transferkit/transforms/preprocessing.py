"""What pretrained weights expect as input, and the resize and crop that gives it to them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image
from timm.data import resolve_model_data_config
from timm.data.transforms_factory import transforms_imagenet_eval
from torch import nn

CropMode = Literal["center", "squash", "border"]
CROP_MODES: tuple[str, ...] = get_args(CropMode)


@dataclass(frozen=True)
class Preprocessing:
    """The input the pretrained weights expect, read from the source, never restated.

    The resize and crop are timm's evaluation transform for these values, so weights are fed exactly
    as timm evaluates them, whatever their `crop_mode`: ``center`` (shorter side to
    ``size / crop_pct``, centre crop), ``squash`` (both sides to ``size / crop_pct``, aspect ratio
    not kept) or ``border`` (longer side to ``size / crop_pct``, padded with the mean colour).
    """

    input_size: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float
    crop_mode: str = "center"

    @classmethod
    def from_timm(cls, model: nn.Module) -> Preprocessing:
        return cls.from_dict(resolve_model_data_config(model))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        """The inverse of `to_dict`, e.g. from a bundle's config.json (extra keys are ignored)."""
        return cls(
            input_size=tuple(values["input_size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=str(values["interpolation"]),
            crop_pct=float(values["crop_pct"]),
            crop_mode=str(values.get("crop_mode") or "center"),  # bundles before crop_mode: centre
        )

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def image_size(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resized(self, image_size: int) -> Preprocessing:
        """The same preprocessing at another square input size."""
        return replace(self, input_size=(self.channels, image_size, image_size))

    def with_channels(self, channels: int) -> Preprocessing:
        """Mean and std repeated cyclically over `channels`, as timm's ``adapt_input_conv`` repeats the
        kernels of the first convolution."""
        cycle = range(channels)
        return replace(
            self,
            input_size=(channels, *self.input_size[1:]),
            mean=tuple(self.mean[i % len(self.mean)] for i in cycle),
            std=tuple(self.std[i % len(self.std)] for i in cycle),
        )

    def resize(self, image: Image.Image) -> np.ndarray:
        """One decoded image resized and cropped as timm evaluates: uint8 (channels of `image`, S, S)."""
        pixels = _eval_transform(self, len(image.getbands()))(image)
        return np.asarray(pixels, dtype=np.uint8).reshape(-1, self.image_size, self.image_size)

    def describe_resize(self) -> str:
        """The resize and crop in words, for model cards and exported metadata."""
        size, scaled = self.image_size, math.floor(self.image_size / self.crop_pct)
        how = {
            "center": f"the shorter side to {scaled} px, then the centre {size} x {size}",
            "squash": f"both sides to {scaled} px (aspect ratio not kept), then the centre {size} x {size}",
            "border": f"the longer side to {scaled} px, padded with the mean colour to {size} x {size}",
        }[self.crop_mode]
        return f"{self.interpolation} resize of {how} (timm's eval transform, crop_mode {self.crop_mode})"

    def resize_key(self) -> str:
        """Everything `resize` depends on, for naming cached pixels: models that differ only in their
        mean and std share them (but ``border`` pads with the mean colour)."""
        fill = f" {self.mean}" if self.crop_mode == "border" else ""
        return f"{self.image_size} {self.interpolation} {self.crop_pct} {self.crop_mode}{fill}"


@functools.lru_cache(maxsize=64)
def _eval_transform(prep: Preprocessing, bands: int) -> Callable[[Image.Image], torch.Tensor]:
    # `border` pads with the mean colour, one value per band of the image: a grayscale image in an RGB
    # network enters as three equal channels, so its padding is the mean's grey.
    mean = prep.mean if bands == len(prep.mean) else (sum(prep.mean) / len(prep.mean),) * bands
    # normalize=False ends timm's pipeline in uint8 pixels; the model normalizes (see Normalize).
    return transforms_imagenet_eval(
        img_size=prep.image_size,
        crop_pct=prep.crop_pct,
        crop_mode=prep.crop_mode,
        interpolation=prep.interpolation,
        mean=mean,
        normalize=False,
    )
