"""Model sources: one spec parser, one registry of sources, one `resolve_model`."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import timm

from transferkit.config import ModelConfig
from transferkit.errors import ModelError, UnknownNameError
from transferkit.models.backbone import Backbone, Preprocessing
from transferkit.registry import Registry

ModelLoader = Callable[[str, ModelConfig], Backbone]
"""Builds a Backbone from the part of the spec after the prefix and the model config."""

model_sources: Registry[ModelLoader] = Registry("model source")
packaged_models: Registry[ModelLoader] = Registry("packaged model")


def resolve_model(spec: str, pretrained: bool = True, arch: str | None = None) -> Backbone:
    """Resolves a model spec such as ``efficientnet_lite0`` or ``timm:resnet18`` to a Backbone."""
    config = ModelConfig(spec, pretrained, arch)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in model_sources:
        return model_sources.get(prefix)(rest, config)
    if spec in packaged_models:
        return packaged_models.get(spec)(spec, config)
    if Path(spec).is_dir():  # a run directory or an exported bundle, without the run: prefix
        return model_sources.get("run")(spec, config)
    valid = [*packaged_models.names(), *(f"{name}:<name>" for name in model_sources.names()), "<run folder>"]
    raise UnknownNameError("model", spec, valid)


@model_sources.register("timm")
def load_timm(name: str, config: ModelConfig) -> Backbone:
    """Any timm architecture; pretrained weights come from timm's hub (network needed)."""
    check_timm_architecture(name)
    try:
        model = timm.create_model(name, pretrained=config.pretrained)
    except OSError as err:
        raise ModelError(
            f"Could not fetch pretrained weights for timm:{name} ({err}). Without a network, use a "
            f"packaged model ({', '.join(packaged_models.names())}) or pretrained=False."
        ) from err
    return Backbone(f"timm:{name}", name, model, Preprocessing.from_timm(model), weights_sha256=None)


def check_timm_architecture(name: str) -> None:
    if not timm.is_model(name.split(".", maxsplit=1)[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ModelError(f"Unknown timm architecture {name!r}. Closest: {', '.join(close) or 'none'}.")
