"""Fine-tune: fit the head on frozen features first, then train the upper layers with discriminative rates."""

from __future__ import annotations

from typing import Any

from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.errors import ConfigError
from transferkit.models.backbone import Backbone
from transferkit.strategies.base import Phase, strategies
from transferkit.strategies.linear_probe import LinearProbe


@strategies.register("fine-tune")
class FineTune(LinearProbe):
    """Linear probe, then fine-tuning of the upper layer groups from that head (LP-FT, Kumar et al. 2022).

    Starting from a converged head keeps the first fine-tuning steps from tearing up pretrained
    features with gradients of a random head. Layer group k below the top trains at
    ``lr * lr_decay**k`` (discriminative rates, Howard & Ruder 2018): early layers hold generic features
    and move least.
    """

    name = "fine-tune"

    def phases(self) -> list[Phase]:
        rates = f"lr {self.config.lr:g}, x{self.config.lr_decay:g} per layer group below the top"
        frozen = f"the lowest {self.config.frozen_groups} layer groups frozen"
        return [
            *super().phases(),
            Phase("fine-tune", self.config.epochs, f"discriminative rates ({rates}), {frozen}"),
        ]

    def prepare(
        self, backbone: Backbone, normalize: nn.Module, train: SplitImages, val: SplitImages
    ) -> dict[str, Any]:
        groups = backbone.layer_groups()
        if self.config.frozen_groups >= len(groups) - 1:
            raise ConfigError(
                f"train.frozen_groups={self.config.frozen_groups} would freeze every layer group of "
                f"{backbone.spec} ({len(groups) - 1} below the head); use at most {len(groups) - 2}, "
                "or the linear-probe strategy."
            )
        summary = super().prepare(backbone, normalize, train, val)
        # The lowest groups hold generic edges and textures that move least; freezing them also skips
        # their backward pass, the most expensive one at full resolution.
        for params in groups[: self.config.frozen_groups]:
            for param in params:
                param.requires_grad_(False)
        return summary

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        groups = backbone.layer_groups()
        top = len(groups) - 1
        return [
            {"params": params, "lr": self.config.lr * self.config.lr_decay ** (top - depth)}
            for depth, params in enumerate(groups)
            if depth >= self.config.frozen_groups
        ]
