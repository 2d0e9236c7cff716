"""Bare weight files for a timm architecture: ``file:PATH`` with ``model.arch`` (``--arch``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from transferkit.config import ModelConfig
from transferkit.errors import ConfigError, ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone, Preprocessing
from transferkit.models.sources import check_timm_architecture, model_sources

# Wrappers that training tools put around a state dict, and prefixes they put before its keys.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREFIXES = ("module.", "model.")


@model_sources.register("file")
def load_weights_file(path: str, config: ModelConfig) -> Backbone:
    """A state dict in safetensors, .pth or .bin form, loaded onto ``timm.create_model(config.arch)``."""
    if not config.arch:
        raise ConfigError(
            f"file:{path} needs the timm architecture of its weights: --arch NAME (model.arch)."
        )
    check_timm_architecture(config.arch)
    model = timm.create_model(config.arch, pretrained=False)
    state = _strip_prefixes(read_state_dict(Path(path)))
    check_keys(model, state, Path(path))
    model.load_state_dict(state, strict=False)
    preprocessing = Preprocessing.from_timm(model)
    return Backbone(f"file:{path}", config.arch, model, preprocessing, sha256_of_file(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a pickle that holds nothing but tensors; never runs pickled code."""
    if not path.is_file():
        raise ModelError(f"No weights file at {path}.")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelError(
            f"Refused to load {path}: it needs code to run while loading, and transferkit loads weights "
            "with torch.load(weights_only=True) only. Save the state dict as safetensors "
            "(safetensors.torch.save_file) or with torch.save(model.state_dict())."
        ) from err
    except (SafetensorError, RuntimeError, OSError, EOFError) as err:
        raise ModelError(f"Cannot load weights from {path}: {err}") from err
    return _unwrap(loaded, path)


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    for key in _CONTAINER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors).")
    return loaded


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _KEY_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def check_keys(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every body tensor must be there with its shape; the classifier may differ (a new head replaces it)."""
    expected = model.state_dict()
    classifier = model.get_classifier()  # type: ignore[operator]
    head = {
        f"{name}.{param}"
        for name, module in model.named_modules()
        if module is classifier
        for param, _ in module.named_parameters()
    }
    for key in head & set(state):
        if key in expected and state[key].shape != expected[key].shape:
            del state[key]
    missing = sorted(set(expected) - set(state) - head)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ModelError(
            f"{path} does not fit {model.__class__.__name__}: {_listing('missing', missing)}, "
            f"{_listing('unexpected', unexpected)}, {_listing('wrong shape', wrong)}. "
            "Check --arch: it must be the architecture the weights were trained with."
        )


def _listing(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")
    return f"{len(keys)} {kind}" + (f" ({shown})" if keys else "")
