"""What pretrained weights expect as input, and the resize and crop that gives it to them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import nn

CropMode = Literal["center", "squash", "border"]
CROP_MODES: tuple[str, ...] = get_args(CropMode)
# Long side over short side beyond which `crop: auto` squashes: a centre crop would keep less than two
# thirds of the image (4:3 and 3:2 photos keep the weights' crop; 16:9 frames, strips and pages do not).
ELONGATED = 1.5


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
        from timm.data import resolve_model_data_config  # timm takes seconds to import; predict needs none

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

    @property
    def scaled_size(self) -> int:
        """What `resize` scales an image to before its crop (the shorter side, both, or the longer one):
        decoding needs no more (`decode_image(..., resized_to=)`)."""
        return math.floor(self.image_size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resized(self, image_size: int) -> Preprocessing:
        """The same preprocessing at another square input size."""
        return replace(self, input_size=(self.channels, image_size, image_size))

    def with_crop(
        self, setting: str, elongation: float | None = None, crop_pct: float | None = None
    ) -> Preprocessing:
        """The crop `setting` asks for (``preprocess.crop``), keeping `crop_pct` of the resized side
        where given (``preprocess.crop_pct``). ``weights`` keeps the weights' own mode, and so does
        ``auto`` unless the images are elongated beyond `ELONGATED` (`elongation`: the median image's
        long side over its short side) and the weights crop their centre: then the whole image, squashed
        (``squash`` at a `crop_pct` of 1 unless one is given), where a centre crop would drop its ends."""
        if setting == "auto":
            elongated = elongation is not None and elongation > ELONGATED
            if elongated and self.crop_mode == "center":
                setting, crop_pct = "squash", 1.0 if crop_pct is None else crop_pct
            else:
                setting = "weights"
        chosen = self if setting == "weights" else replace(self, crop_mode=setting)
        return chosen if crop_pct is None else replace(chosen, crop_pct=crop_pct)

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
        size, scaled = self.image_size, self.scaled_size
        resample = RESAMPLING[self.interpolation]
        if self.crop_mode == "squash":
            image = image.resize((scaled, scaled), resample)
        elif self.crop_mode == "border":
            ratio = max(image.height, image.width) / scaled
            image = image.resize((round(image.width / ratio), round(image.height / ratio)), resample)
        else:
            image = image.resize(_shorter_side_to(scaled, image.width, image.height), resample)
        cropped = _centre_crop_or_pad(image, size, self._fill(len(image.getbands())))
        return np.ascontiguousarray(np.array(cropped, np.uint8).reshape(size, size, -1).transpose(2, 0, 1))

    def _fill(self, bands: int) -> tuple[int, ...]:
        """What ``border`` pads with: the mean colour, one value per band of the image. A grayscale image
        in an RGB network enters as three equal channels, so its padding is the mean's grey; ``center``
        and ``squash`` only pad images smaller than the crop, with black."""
        if self.crop_mode != "border":
            return (0,) * bands
        mean = self.mean if bands == len(self.mean) else (sum(self.mean) / len(self.mean),) * bands
        return tuple(round(255 * value) for value in mean)

    def describe_resize(self) -> str:
        """The resize and crop in words, for model cards and exported metadata."""
        size, scaled = self.image_size, self.scaled_size
        how = {
            "center": f"the shorter side to {scaled} px, then the centre {size} x {size}",
            "squash": f"both sides to {scaled} px (aspect ratio not kept)"
            + (f", then the centre {size} x {size}" if scaled > size else ""),
            "border": f"the longer side to {scaled} px, padded with the mean colour to {size} x {size}",
        }[self.crop_mode]
        return f"{self.interpolation} resize of {how} (timm's eval transform, crop_mode {self.crop_mode})"

    def resize_key(self) -> str:
        """Everything `resize` depends on, for naming cached pixels: models that differ only in their
        mean and std share them (but ``border`` pads with the mean colour)."""
        fill = f" {self.mean}" if self.crop_mode == "border" else ""
        return f"{self.image_size} {self.interpolation} {self.crop_pct} {self.crop_mode}{fill}"


# The resize and crop of timm's `transforms_imagenet_eval` (normalize=False) on PIL images, restated with
# PIL alone so that predicting imports neither timm nor torchvision; tests compare the pixels with timm's.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def _shorter_side_to(size: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) with the shorter side `size` and the longer one truncated in proportion, as
    torchvision's `Resize(size)` computes it."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _centre_crop_or_pad(image: Image.Image, size: int, fill: tuple[int, ...]) -> Image.Image:
    """The centre `size` x `size` of `image`, padded with `fill` first on the sides where it is smaller."""
    width, height = image.size
    if width < size or height < size:
        padded = Image.new(
            image.mode, (max(width, size), max(height, size)), fill if len(fill) > 1 else fill[0]
        )
        padded.paste(
            image, ((size - width) // 2 if width < size else 0, (size - height) // 2 if height < size else 0)
        )
        image, (width, height) = padded, padded.size
    top, left = round((height - size) / 2), round((width - size) / 2)  # half-way: to even, as torchvision
    return image.crop((left, top, left + size, top + size))
