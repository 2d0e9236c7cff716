"""Linear probe: the backbone stays frozen and a logistic-regression head is fitted on its features."""

from __future__ import annotations

from typing import Any

from transferkit.models.backbone import Backbone
from transferkit.training.strategies.base import FinetuneStrategy, strategies


@strategies.register("linear-probe")
class LinearProbe(FinetuneStrategy):
    """Frozen features, computed once; the head is solved to convergence in seconds."""

    name = "linear-probe"

    def thawed_groups(self, total: int, epoch: int) -> int:
        return 0

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        return []
