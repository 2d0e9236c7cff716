"""Parameter-efficient strategies: LoRA adapters and BitFit; the head always trains fully."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from transferkit.models.backbone import Backbone
from transferkit.training.method_options import LoRAOptions
from transferkit.training.strategies.base import FinetuneStrategy, Phase, freeze_all_but, strategies


class LowRankUpdate(nn.Module):
    """A weight plus ``scale * B @ A``, applied as a parametrization of the weight (Hu et al. 2021).

    B starts at zero, so training begins exactly at the pretrained network. A conv kernel is seen as an
    (out, in * kh * kw) matrix.
    """

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float) -> None:
        super().__init__()
        fan_in = weight[0].numel()
        rank = min(rank, weight.shape[0], fan_in)
        self.down = nn.Parameter(torch.randn(rank, fan_in) / math.sqrt(fan_in))
        self.up = nn.Parameter(torch.zeros(weight.shape[0], rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.up @ self.down).view_as(weight) * self.scale


def adapted_layers(backbone: Backbone) -> list[nn.Module]:
    """Linear layers and dense convolutions below the head; depthwise convolutions are too small to matter."""
    head = backbone.head()
    return [
        m
        for m in backbone.model.modules()
        if m is not head and (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))
    ]


@strategies.register("lora")
class LoRA(FinetuneStrategy):
    """Low-rank updates on every dense layer of the backbone; merged into the weights before export."""

    Options = LoRAOptions
    name = "lora"

    def phases(self) -> list[Phase]:
        rank = f"rank {self.options.rank}, alpha {self.options.alpha:g}"
        return [
            *super().phases(),
            Phase("lora", self.config.epochs, f"LoRA adapters ({rank}), lr {self.config.lr}"),
        ]

    def adapt(self, backbone: Backbone) -> None:
        for layer in adapted_layers(backbone):
            weight = layer.weight
            assert isinstance(weight, torch.Tensor)
            update = LowRankUpdate(weight, self.options.rank, self.options.alpha)
            parametrize.register_parametrization(layer, "weight", update)

    def _trainable(self, backbone: Backbone) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        updates = [
            p for m in backbone.model.modules() if isinstance(m, LowRankUpdate) for p in m.parameters()
        ]
        return updates, list(backbone.head().parameters())

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        updates, head = self._trainable(backbone)
        return [
            {"params": updates, "lr": self.lr, "name": "adapters"},
            {"params": head, "lr": self.lr, "name": "head"},
        ]

    def set_trainable(self, backbone: Backbone, epoch: int) -> None:
        updates, head = self._trainable(backbone)
        freeze_all_but(backbone, updates + head)

    def finalize(self, backbone: Backbone) -> None:
        for layer in adapted_layers(backbone):
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


@strategies.register("bitfit")
class BitFit(FinetuneStrategy):
    """Only biases and normalization layers train, with the head (Ben Zaken et al. 2022)."""

    name = "bitfit"

    def phases(self) -> list[Phase]:
        return [
            *super().phases(),
            Phase("bitfit", self.config.epochs, f"biases and norms only, lr {self.config.lr}"),
        ]

    def _trainable(self, backbone: Backbone) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        head = backbone.head()
        norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        body = [
            p
            for m in backbone.model.modules()
            if m is not head
            for name, p in m.named_parameters(recurse=False)
            if name == "bias" or isinstance(m, norms)
        ]
        return body, list(head.parameters())

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        body, head = self._trainable(backbone)
        return [
            {"params": body, "lr": self.lr, "name": "biases"},
            {"params": head, "lr": self.lr, "name": "head"},
        ]

    def set_trainable(self, backbone: Backbone, epoch: int) -> None:
        freeze_all_but(backbone, [p for group in self._trainable(backbone) for p in group])
