"""``hf:<org>/<name>`` or a ``save_pretrained`` folder: Hugging Face transformers vision models.

The model is loaded with AutoModelForImageClassification where its type has a classification head,
else with AutoModel; preprocessing comes from its saved image processor, never from a guess.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from transferkit.config import ModelConfig
from transferkit.errors import MissingDependencyError, ModelError
from transferkit.files import sha256_of_file
from transferkit.hub import hf_hub_access
from transferkit.models.adapter import FeatureNetwork, take_output_layer
from transferkit.models.backbone import Backbone
from transferkit.models.sources import families, model_sources
from transferkit.transforms.preprocessing import Preprocessing

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@model_sources.register("hf")
def load_hf(name: str, config: ModelConfig) -> Backbone:
    """A transformers image model from the hub (cached or online) or from a local folder."""
    transformers = _transformers()
    folder = Path(name).expanduser()
    hint = (
        "Offline, save the model and its image processor with save_pretrained on a machine with a "
        "network and pass the folder: --model path/to/folder."
    )
    with _folder_errors(folder) if folder.is_dir() else hf_hub_access(f"hf:{name}", hint):
        hf_config = transformers.AutoConfig.from_pretrained(name)
        preprocessing = _preprocessing(transformers, name)
        model = _feature_network(transformers, hf_config, name if config.pretrained else None)
    weights_sha256 = _weights_sha256(name, folder) if config.pretrained else None
    architecture = (hf_config.architectures or [hf_config.model_type])[0]
    spec = f"hf:{name}"
    return Backbone(spec, architecture, model, preprocessing, weights_sha256, "hf", hf_config.to_dict())


@contextlib.contextmanager
def _folder_errors(folder: Path) -> Iterator[None]:
    """transformers' errors about a local folder (missing weights or config) as a ModelError naming it."""
    try:
        yield
    except OSError as err:
        raise ModelError(
            f"Cannot load the transformers model in {folder}: {err}. Save it again with save_pretrained "
            "(config.json, model.safetensors and preprocessor_config.json)."
        ) from err


@families.register("hf")
def build_hf(architecture: str, num_classes: int, config: dict[str, Any] | None = None) -> nn.Module:
    if config is None:
        raise ModelError(f"A saved hf model ({architecture}) needs its transformers config to be rebuilt.")
    transformers = _transformers()
    model = _feature_network(transformers, transformers.AutoConfig.for_model(**config), None)
    model.reset_classifier(num_classes)
    return model


def _feature_network(transformers: Any, hf_config: Any, pretrained: str | None) -> FeatureNetwork:
    """The model with its output layer taken out as the head; `pretrained` names the weights to load."""
    try:
        auto = transformers.AutoModelForImageClassification
        network = auto.from_pretrained(pretrained) if pretrained else auto.from_config(hf_config)
    except ValueError:  # no classification head for this model type: the bare model, pooled
        auto = transformers.AutoModel
        network = auto.from_pretrained(pretrained) if pretrained else auto.from_config(hf_config)
        width = int(getattr(hf_config, "hidden_size", 0) or hf_config.hidden_sizes[-1])
        return FeatureNetwork(network, nn.Linear(width, 1), _pooled_output)
    return FeatureNetwork(network, take_output_layer(network), _classifier_input)


def _classifier_input(body: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """With the output layer taken out, the classification model's logits are its pre-logit features."""
    return body(pixel_values=images).logits


def _pooled_output(body: nn.Module, images: torch.Tensor) -> torch.Tensor:
    outputs = body(pixel_values=images)
    if getattr(outputs, "pooler_output", None) is not None:
        return outputs.pooler_output
    hidden = outputs.last_hidden_state
    return hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))  # tokens, or a feature map


def _preprocessing(transformers: Any, name: str) -> Preprocessing:
    """Mean, std, size, crop and interpolation from the model's image processor config."""
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"hf:{name} has no image processor config (preprocessor_config.json), so its preprocessing is "
            "unknown. Save the processor next to the model: AutoImageProcessor.from_pretrained(...)"
            ".save_pretrained(folder)."
        ) from err
    size, crop_pct = _size_and_crop(processor)
    return Preprocessing(
        input_size=(3, size, size),
        mean=tuple(float(v) for v in processor.image_mean),
        std=tuple(float(v) for v in processor.image_std),
        interpolation=Image.Resampling(int(processor.resample)).name.lower(),
        crop_pct=crop_pct,
    )


def _size_and_crop(processor: Any) -> tuple[int, float]:
    """The square input size and the fraction of the resized shorter side the centre crop keeps."""
    size = dict(processor.size)
    crop = dict(processor.crop_size or {}) if getattr(processor, "do_center_crop", False) else {}
    if crop.get("height"):
        resized = size.get("shortest_edge") or size["height"]
        return int(crop["height"]), float(crop["height"]) / float(resized)
    if size.get("height"):
        return int(size["height"]), 1.0
    if size.get("shortest_edge"):
        # ConvNeXt's processor: below 384 px it resizes to shortest_edge / crop_pct and crops; from 384
        # px on it resizes to the square without a crop.
        edge = int(size["shortest_edge"])
        return edge, float(getattr(processor, "crop_pct", None) or 1.0) if edge < 384 else 1.0
    raise ModelError(f"Cannot read an input size from the image processor's size {size}.")


def _weights_sha256(name: str, folder: Path) -> str | None:
    if folder.is_dir():
        files = [folder / f for f in _WEIGHT_FILES]
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = [try_to_load_from_cache(name, f) for f in _WEIGHT_FILES]
        files = [Path(c) for c in cached if isinstance(c, str)]
    return next((sha256_of_file(path) for path in files if path.is_file()), None)


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as err:
        raise MissingDependencyError("transformers", "hf: models") from err
