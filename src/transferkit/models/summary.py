"""A loaded model as `fit` would see it, for `transferkit models --check`."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.models.backbone import Backbone
from transferkit.transforms.preprocessing import Preprocessing


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
