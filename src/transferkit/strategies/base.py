"""The FinetuneStrategy interface: which layer groups train, at which rates, in which phases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from transferkit.config import TrainConfig
from transferkit.data.cache import SplitImages
from transferkit.models.backbone import Backbone
from transferkit.registry import Registry


@dataclass(frozen=True)
class Phase:
    """One stage of a strategy, as the report and the progress display name it."""

    name: str
    epochs: int
    description: str


class FinetuneStrategy:
    """Base class: override the hooks that differ; the training loop never branches on a name.

    Hooks, in the order `fit` calls them:
        phases: what will happen, for the report and the progress display.
        prepare: work before the epoch loop, e.g. fitting the head on frozen features.
        param_groups: the parameters the optimizer trains, each with its learning rate.
    """

    name = "base"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    @property
    def train_epochs(self) -> int:
        """Epochs of gradient training through the backbone (the Lightning loop)."""
        return sum(p.epochs for p in self.phases())  # phases outside the loop, like the head, have none

    def prepare(
        self, backbone: Backbone, normalize: nn.Module, train: SplitImages, val: SplitImages
    ) -> dict[str, Any]:
        """Runs before the epoch loop; returns facts for the history (e.g. validation accuracy)."""
        return {}

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        raise NotImplementedError


strategies: Registry[type[FinetuneStrategy]] = Registry("strategy")


def create_strategy(config: TrainConfig) -> FinetuneStrategy:
    return strategies.get(config.strategy)(config)
