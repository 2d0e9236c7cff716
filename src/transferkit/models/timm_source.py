"""``timm:<arch>[.<tag>]`` with hub weights or ``model.weights``, and timm folders (``timm:DIR``)."""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from transferkit.config import ModelConfig
from transferkit.errors import ConfigError, ModelError
from transferkit.files import sha256_of_file
from transferkit.hub import hf_hub_access
from transferkit.models.backbone import Backbone
from transferkit.models.files import load_weights_into
from transferkit.models.sources import families, model_sources
from transferkit.transforms.preprocessing import Preprocessing

_HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@model_sources.register("timm")
def load_timm(name: str, config: ModelConfig) -> Backbone:
    """A timm architecture with weights from ``config.weights``, a timm folder, or timm's hub."""
    if Path(name).expanduser().is_dir():
        return _load_timm_folder(Path(name).expanduser(), config)
    check_timm_architecture(name)
    if config.weights:
        model = timm.create_model(name, pretrained=False)
        weights_sha256 = load_weights_into(model, Path(config.weights)) if config.pretrained else None
    else:
        model = _create_from_hub(name, config.pretrained)
        weights_sha256 = _cached_weights_sha256(model) if config.pretrained else None
    architecture = name.split(".", maxsplit=1)[0]
    return Backbone(f"timm:{name}", architecture, model, Preprocessing.from_timm(model), weights_sha256)


@model_sources.register("file")
def load_weights_file(path: str, config: ModelConfig) -> Backbone:
    """``file:PATH`` with ``model.arch``: a bare state dict (safetensors, .pth, .bin) for timm."""
    if not config.arch:
        raise ConfigError(
            f"file:{path} needs the timm architecture of its weights: --arch NAME (model.arch)."
        )
    backbone = load_timm(config.arch, replace(config, weights=path))
    backbone.spec = f"file:{path}"
    return backbone


@families.register("timm")
def build_timm(architecture: str, num_classes: int, config: dict[str, Any] | None = None) -> nn.Module:
    return timm.create_model(architecture, num_classes=num_classes)


def check_timm_architecture(name: str) -> None:
    if not timm.is_model(name.split(".", maxsplit=1)[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ModelError(f"Unknown timm architecture {name!r}. Closest: {', '.join(close) or 'none'}.")


def _create_from_hub(name: str, pretrained: bool) -> nn.Module:
    hint = (
        f"Offline, pass a local copy: --weights FILE (with --model timm:{name}), or a folder saved with "
        "timm's save_for_hf (config.json + model.safetensors), or use a packaged model (transferkit models)."
    )
    if not pretrained:
        return timm.create_model(name, pretrained=False)
    with hf_hub_access(f"timm:{name}", hint):
        return timm.create_model(name, pretrained=True)


def _load_timm_folder(folder: Path, config: ModelConfig) -> Backbone:
    """A folder written by timm's ``save_for_hf``: config.json (architecture, pretrained_cfg) + weights."""
    weights = next((folder / f for f in _HUB_WEIGHT_FILES if (folder / f).is_file()), None)
    if config.pretrained and weights is None:
        raise ModelError(f"{folder} has a config.json but no {' or '.join(_HUB_WEIGHT_FILES)}.")
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=config.pretrained)
    except (RuntimeError, KeyError) as err:
        raise ModelError(f"Cannot build the timm model in {folder}: {err}") from err
    architecture = str(dict(model.pretrained_cfg)["architecture"])  # type: ignore[arg-type]
    weights_sha256 = sha256_of_file(weights) if config.pretrained and weights else None
    return Backbone(f"timm:{folder}", architecture, model, Preprocessing.from_timm(model), weights_sha256)


def _cached_weights_sha256(model: nn.Module) -> str | None:
    """Hash of the hub file the weights came from, found in the hub caches timm downloads into."""
    from huggingface_hub import try_to_load_from_cache

    cfg: dict[str, Any] = dict(model.pretrained_cfg)  # type: ignore[arg-type]
    candidates: list[Path] = []
    if cfg.get("hf_hub_id"):
        for filename in _HUB_WEIGHT_FILES:
            cached = try_to_load_from_cache(cfg["hf_hub_id"], filename)
            candidates += [Path(cached)] if isinstance(cached, str) else []
    if cfg.get("url"):
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg["url"]).name)
    return next((sha256_of_file(path) for path in candidates if path.is_file()), None)
