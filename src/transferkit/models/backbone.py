"""The uniform interface every model source resolves to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv, group_parameters
from torch import nn

from transferkit.errors import ModelError


@dataclass(frozen=True)
class Preprocessing:
    """What the pretrained weights expect as input, read from the source, never restated."""

    input_size: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float

    @classmethod
    def from_timm(cls, model: nn.Module) -> Preprocessing:
        return cls.from_dict(timm.data.resolve_model_data_config(model))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        """The inverse of `to_dict`, e.g. from a bundle's config.json (extra keys are ignored)."""
        return cls(
            input_size=tuple(values["input_size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=str(values["interpolation"]),
            crop_pct=float(values["crop_pct"]),
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
        """Mean and std repeated cyclically over `channels`, as `adapt_first_conv` repeats the kernels."""
        cycle = range(channels)
        return replace(
            self,
            input_size=(channels, *self.input_size[1:]),
            mean=tuple(self.mean[i % len(self.mean)] for i in cycle),
            std=tuple(self.std[i % len(self.std)] for i in cycle),
        )


@dataclass
class Backbone:
    """A pretrained timm-style network with its preprocessing and provenance.

    Attributes:
        spec: the model spec it was resolved from, e.g. ``efficientnet_lite0``.
        architecture: the architecture's name in its family, used to rebuild it from a bundle.
        model: the network; its classifier is replaced by `reset_head`.
        preprocessing: input size, mean, std and interpolation the weights expect.
        weights_sha256: hash of the weights file, or None for random init.
        family: the library that builds the architecture (timm, torchvision, hf); `model` has timm's
            interface either way (see `adapter.FeatureNetwork`).
        architecture_config: what the family needs beyond the name to rebuild it (a transformers config).
    """

    spec: str
    architecture: str
    model: nn.Module
    preprocessing: Preprocessing
    weights_sha256: str | None
    family: str = "timm"
    architecture_config: dict[str, Any] | None = None

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)  # type: ignore[arg-type]

    def reset_head(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)  # type: ignore[operator]

    def head(self) -> nn.Module:
        return self.model.get_classifier()  # type: ignore[operator]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features, shape (N, num_features)."""
        features = self.model.forward_features(images)  # type: ignore[operator]
        return self.model.forward_head(features, pre_logits=True)  # type: ignore[operator]

    def adapt_input_channels(self, channels: int) -> None:
        """Lets the network take `channels`-channel images, adapting its first convolution as timm does.

        Grayscale images need nothing: they enter as three equal channels, which equals timm's summed
        kernels (``in_chans=1``) when the channels share mean and std.
        """
        if channels in (1, self.preprocessing.channels):
            return
        if self.family == "hf":
            raise ModelError(
                f"{self.spec}: transformers models take 3-channel images; {channels} were given."
            )
        adapt_first_conv(self.model, channels)
        self.preprocessing = self.preprocessing.with_channels(channels)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters grouped from input to output with the model's own `group_matcher`; head last."""
        head_ids = {id(p) for p in self.head().parameters()}
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))  # type: ignore[operator]
        named = dict(self.model.named_parameters())
        ordered = [[named[name] for name in names] for _, names in sorted(groups.items())]
        body = [[p for p in group if id(p) not in head_ids] for group in ordered]
        return [group for group in body if group] + [list(self.head().parameters())]


def adapt_first_conv(model: nn.Module, channels: int) -> None:
    """Gives the first convolution `channels` inputs: timm's ``adapt_input_conv`` repeats the RGB kernels
    cyclically and scales them by 3 / channels, so an image whose extra bands are zero keeps its response
    scaled, not scrambled."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("first_conv")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    conv = model.get_submodule(name) if name else (convs[0] if convs else None)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ModelError(
            f"Cannot adapt {model.__class__.__name__} to {channels} input channels: no plain first conv."
        )
    weight = conv.weight.detach()
    conv.weight = nn.Parameter(adapt_input_conv(channels, weight, base_chans=weight.shape[1]))
    conv.in_channels = channels
