"""Model sources: one spec parser, one registry of sources, one `resolve_model`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
from torch import nn

from transferkit.catalog import PACKAGED
from transferkit.config import ModelConfig
from transferkit.errors import ConfigError, ModelError, TransferkitError, UnknownNameError
from transferkit.models.backbone import Backbone
from transferkit.registry import Registry

ModelLoader = Callable[[str, ModelConfig], Backbone]
"""Builds a Backbone from the part of the spec after the prefix and the model config."""

Rebuilder = Callable[[str, int, dict[str, Any] | None], nn.Module]
"""Builds a randomly initialised network from (architecture, num_classes, architecture_config)."""

model_sources: Registry[ModelLoader] = Registry("model source")
packaged_models: Registry[ModelLoader] = Registry("packaged model")
families: Registry[Rebuilder] = Registry("model family")

# The built-in sources register themselves when first used, so that reading a bundle imports none of them.
_BUILT_IN = "transferkit.models"
for _name, _module in {
    "hf": "hf_source",
    "run": "runs",
    "timm": "timm_source",
    "file": "timm_source",
    "torchvision": "torchvision_source",
}.items():
    model_sources.declare(_name, f"{_BUILT_IN}.{_module}")
for _name in ("hf", "timm", "torchvision"):
    families.declare(_name, f"{_BUILT_IN}.{_name}_source")
for _model in PACKAGED:
    packaged_models.declare(_model.name, f"{_BUILT_IN}.packaged")

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: `source` is a registered prefix, ``packaged`` or ``path``."""

    source: str
    name: str


def parse_model_spec(spec: str) -> ModelSpec:
    """Splits ``timm:resnet50.a1_in1k``, ``file:C:\\w.pth``, ``runs/x`` ... into source and name.

    A one-letter prefix is a Windows drive, not a source; text with a path separator, a leading dot or
    tilde, or a weights suffix is a path.
    """
    prefix, sep, rest = spec.partition(":")
    if sep and len(prefix) > 1 and prefix in model_sources:
        if not rest.strip():
            raise ConfigError(f"Model spec {spec!r} names nothing after {prefix}:; write {prefix}:NAME.")
        return ModelSpec(prefix, rest)
    if not spec.strip():  # Path("") is the working directory: never a model by accident
        raise ConfigError(
            "The model spec is empty: give a packaged model (transferkit models), source:name such as "
            "timm:resnet18, or a run directory or weights file."
        )
    if spec in packaged_models:
        return ModelSpec("packaged", spec)
    if _looks_like_path(spec):
        return ModelSpec("path", spec)
    valid = [*packaged_models.names(), *(f"{name}:<name>" for name in model_sources.names()), "<folder>"]
    if timm.is_model(spec):
        valid.insert(0, f"timm:{spec}")  # shown first among the closest matches
    raise UnknownNameError("model", spec, valid)


def resolve_model(
    spec: str, pretrained: bool = True, arch: str | None = None, weights: str | None = None
) -> Backbone:
    """Resolves a model spec such as ``efficientnet_lite0`` or ``timm:resnet18`` to a Backbone."""
    config = ModelConfig(spec, pretrained, arch, weights)
    parsed = parse_model_spec(spec)
    if weights and parsed.source not in ("timm", "torchvision"):
        raise ConfigError(f"--weights (model.weights) goes with timm: or torchvision: models, not {spec}.")
    if arch and parsed.source not in ("file", "path"):
        raise ConfigError(f"--arch (model.arch) goes with file: weights, not {spec}.")
    if parsed.source == "packaged":
        return packaged_models.get(spec)(spec, config)
    if parsed.source == "path":
        path = Path(spec).expanduser()
        return model_sources.get(local_source(path))(str(path), config)
    return model_sources.get(parsed.source)(parsed.name, config)


def local_source(path: Path) -> str:
    """The source that reads a local file or folder, told apart by what the folder holds."""
    if path.is_file():
        return "file"
    if not path.is_dir():
        raise ModelError(f"No model at {path}: no such file or folder.")
    if (path / "model" / "config.json").is_file():
        return "run"
    config = _read_json(path / "config.json")
    if "model_sha256" in config or {"format", "preprocessing"} <= set(config):
        return "run"  # a transferkit bundle (timm's save_for_hf also writes label_names)
    if "model_type" in config:
        return "hf"  # transformers' save_pretrained
    if "architecture" in config:
        return "timm"  # timm's save_for_hf / push_to_hf_hub
    raise ModelError(
        f"{path} holds no model transferkit recognises: expected a run directory, a transferkit bundle, "
        "a timm folder or a transformers folder (config.json with model weights)."
    )


def rebuild_network(
    family: str, architecture: str, num_classes: int, config: dict[str, Any] | None
) -> nn.Module:
    """A randomly initialised network of a saved architecture, ready for its saved weights.

    Raises:
        ModelError: the family cannot build that architecture (a changed config.json, another version).
    """
    build = families.get(family)
    try:
        return build(architecture, num_classes, config)
    except TransferkitError:
        raise
    # What timm (RuntimeError), torchvision (ValueError) and transformers raise for what they do not know.
    except (RuntimeError, ValueError, TypeError, KeyError, OSError) as err:
        raise ModelError(
            f"Cannot build the {family} architecture {architecture!r} with {num_classes} classes: {err}. "
            "The saved config names an architecture this installation cannot build; export the run again "
            "with this version, or install the versions listed in the run's manifest.json."
        ) from err


def _looks_like_path(text: str) -> bool:
    return (
        any(sep in text for sep in "/\\")
        or text.startswith((".", "~"))
        or text.endswith(WEIGHT_SUFFIXES)
        or _exists(text)
    )


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long for a path, or one with a NUL byte: not a path
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: absurdly nested JSON
        raise ModelError(f"Cannot read {path}: {err}") from err
    return content if isinstance(content, dict) else {}
