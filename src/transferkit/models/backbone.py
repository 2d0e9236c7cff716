"""The uniform interface every model source resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.models import adapt_input_conv, group_parameters
from torch import nn

from transferkit.errors import ModelError
from transferkit.models.ordinal import install_ordinal_head
from transferkit.transforms.preprocessing import Preprocessing


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
        ancestry: for a model fine-tuned by transferkit, the models it descends from, nearest first, each
            ``{"spec": ..., "weights_sha256": ...}``; empty for any other source.
    """

    spec: str
    architecture: str
    model: nn.Module
    preprocessing: Preprocessing
    weights_sha256: str | None
    family: str = "timm"
    architecture_config: dict[str, Any] | None = None
    ancestry: tuple[dict[str, str | None], ...] = ()

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)  # type: ignore[arg-type]

    def reset_head(self, num_classes: int, *, ordinal: bool = False) -> None:
        """A new, untrained head for `num_classes`: linear, or for ordered classes a cumulative-link
        head (`models.ordinal`)."""
        self.model.reset_classifier(num_classes)  # type: ignore[operator]
        if ordinal:
            install_ordinal_head(self.model)

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
