"""``torchvision:<arch>[:<weights enum>]``: torchvision models with the preprocessing of their weight enum.

Weights come from ``model.weights`` or from torch hub's cache (``$TORCH_HOME/hub/checkpoints``), where
torchvision itself keeps them; they are downloaded there only when the server can be reached.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from transferkit.config import ModelConfig
from transferkit.errors import ModelError
from transferkit.hub import reachable
from transferkit.models.adapter import FeatureNetwork, take_output_layer
from transferkit.models.backbone import Backbone
from transferkit.models.files import load_weights_into
from transferkit.models.sources import families, model_sources
from transferkit.transforms.preprocessing import Preprocessing


@model_sources.register("torchvision")
def load_torchvision(name: str, config: ModelConfig) -> Backbone:
    """``resnet50`` (DEFAULT weights) or ``resnet50:IMAGENET1K_V2``; ``model.weights`` for a local file."""
    architecture, _, enum_name = name.partition(":")
    weights = weight_enum(architecture, enum_name or "DEFAULT")
    network = torchvision.models.get_model(architecture, weights=None)
    weights_sha256 = None
    if config.pretrained:
        path = Path(config.weights) if config.weights else cached_weights_file(weights, f"torchvision:{name}")
        # The output layer may have another number of classes; a new head replaces it anyway.
        linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
        weights_sha256 = load_weights_into(network, path, head=linears[-1] if linears else None)
    model = _with_new_head(network, num_classes=len(weights.meta["categories"]))
    return Backbone(
        f"torchvision:{name}", architecture, model, preprocessing_of(weights), weights_sha256, "torchvision"
    )


@families.register("torchvision")
def build_torchvision(architecture: str, num_classes: int, config: dict[str, Any] | None = None) -> nn.Module:
    return _with_new_head(torchvision.models.get_model(architecture, weights=None), num_classes)


def weight_enum(architecture: str, enum_name: str) -> WeightsEnum:
    """The weights enum member, e.g. ``ResNet50_Weights.IMAGENET1K_V2``; it carries url and transforms."""
    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        close = difflib.get_close_matches(architecture, known, n=5, cutoff=0.5)
        raise ModelError(
            f"Unknown torchvision architecture {architecture!r}. Closest: {', '.join(close) or 'none'}."
        )
    enum = torchvision.models.get_model_weights(architecture)
    try:
        return enum[enum_name]
    except KeyError:
        valid = ", ".join(["DEFAULT", *(member.name for member in enum)])
        raise ModelError(
            f"torchvision:{architecture} has no weights {enum_name!r}. Valid: {valid}."
        ) from None


def preprocessing_of(weights: WeightsEnum) -> Preprocessing:
    """Input size, mean, std, interpolation and crop from the enum's own inference transforms."""
    transforms = weights.transforms()
    crop, resize = transforms.crop_size[0], transforms.resize_size[0]
    return Preprocessing(
        input_size=(3, crop, crop),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=transforms.interpolation.value,
        crop_pct=crop / resize,
    )


def cached_weights_file(weights: WeightsEnum, spec: str) -> Path:
    """torch hub's cached copy of the enum's file, downloaded first when the server answers."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if path.is_file():
        return path
    if not reachable(weights.url):
        raise ModelError(
            f"The weights of {spec} are not in torch hub's cache ({path}) and {weights.url} cannot be "
            "reached. Offline, copy the file there, or pass it with --weights FILE."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name)
    torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=match.group(1) if match else None)
    return path


def _with_new_head(network: nn.Module, num_classes: int) -> FeatureNetwork:
    try:
        model = FeatureNetwork(network, take_output_layer(network))
    except ValueError as err:  # e.g. SqueezeNet, whose classifier is a convolution
        raise ModelError(f"{err} transferkit needs a linear classifier to swap for a new head.") from err
    if model.head.out_features != num_classes:
        model.reset_classifier(num_classes)
    return model
