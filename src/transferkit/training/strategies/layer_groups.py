"""Strategies that train whole layer groups: fine-tune, lp-ft, full, partial:K and gradual."""

from __future__ import annotations

from typing import Any

from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models.backbone import Backbone
from transferkit.training.method_options import FineTuneOptions, GradualOptions, PartialOptions
from transferkit.training.strategies.base import FinetuneStrategy, Phase, strategies


def _rates(strategy: FinetuneStrategy) -> str:
    if strategy.lr_decay == 1:
        return f"lr {strategy.config.lr}"
    return f"lr {strategy.config.lr}, x{strategy.lr_decay:g} per layer group below the top"


@strategies.register("fine-tune")
class FineTune(FinetuneStrategy):
    """Head on frozen features, then the upper layer groups with discriminative rates (fastai-style).

    Starting from a converged head keeps the first steps from tearing up pretrained features with the
    gradients of a random head. The lowest groups hold generic edges and textures that move least;
    freezing them also skips their backward pass, the most expensive one at full resolution.
    """

    Options = FineTuneOptions
    name = "fine-tune"
    default_lr_decay = 0.8

    def phases(self) -> list[Phase]:
        frozen = f"the lowest {self.options.frozen_groups} layer groups frozen"
        return [*super().phases(), Phase("fine-tune", self.config.epochs, f"{_rates(self)}, {frozen}")]

    def adapt(self, backbone: Backbone) -> None:
        groups = len(backbone.layer_groups())
        if self.options.frozen_groups >= groups - 1:
            raise ConfigError(
                f"train.strategy.frozen_groups={self.options.frozen_groups} would freeze every layer "
                f"group of {backbone.spec} ({groups - 1} below the head); use at most {groups - 2}, "
                "or the linear-probe strategy."
            )

    def thawed_groups(self, total: int, epoch: int) -> int:
        return total - self.options.frozen_groups


@strategies.register("lp-ft")
class LinearProbeThenFineTune(FinetuneStrategy):
    """Linear probe to convergence, then every layer at a tenth of the rate (Kumar et al., ICLR 2022).

    The converged head keeps the features from distorting early on, which is what makes full
    fine-tuning lose to a linear probe out of distribution.
    """

    name = "lp-ft"

    def __init__(self, config: TrainConfig, options: Any = None) -> None:
        super().__init__(config, options)
        self.lr = self.lr / 10

    def phases(self) -> list[Phase]:
        rate = f"every layer group at lr {self.config.lr} / 10"
        return [*super().phases(), Phase("fine-tune", self.config.epochs, rate)]


@strategies.register("full")
class Full(FinetuneStrategy):
    """Every layer from the first step, the new head included; ``train.lr_decay`` for layer-wise decay."""

    name = "full"
    fits_head_first = False

    def phases(self) -> list[Phase]:
        return [Phase("full", self.config.epochs, f"all layer groups and a new head, {_rates(self)}")]


@strategies.register("partial")
class Partial(FinetuneStrategy):
    """``partial:K``: the head on frozen features, then only the top K layer groups below it train."""

    Options = PartialOptions  # which refuses to be built without `groups`
    name = "partial"
    argument = PartialOptions.argument

    def __init__(self, config: TrainConfig, options: Any = None) -> None:
        super().__init__(config, options)
        self.top = int(self.options.groups)

    def phases(self) -> list[Phase]:
        trained = f"the top {self.top} layer groups and the head, {_rates(self)}"
        return [*super().phases(), Phase("partial", self.config.epochs, trained)]

    def adapt(self, backbone: Backbone) -> None:
        body = len(backbone.layer_groups()) - 1
        if self.top > body:
            raise ConfigError(
                f"Strategy {self.config.strategy!r}: {backbone.spec} has {body} layer groups below the "
                f"head; use partial:1 to partial:{body}, or full."
            )

    def thawed_groups(self, total: int, epoch: int) -> int:
        return self.top + 1


@strategies.register("gradual")
class Gradual(FinetuneStrategy):
    """The head on frozen features, then one more layer group thaws per epoch, top down.

    With ``unfreeze_milestones`` (``{name: gradual, unfreeze_milestones: [2, 4]}``) a group thaws at
    each listed epoch instead, as Lightning Flash's ``unfreeze_milestones``. Which groups train is a
    function of the epoch alone, so a resumed run trains exactly the groups the interrupted one did.
    """

    Options = GradualOptions
    name = "gradual"
    default_lr_decay = 0.8

    def phases(self) -> list[Phase]:
        milestones = self.options.unfreeze_milestones
        when = f"at epochs {milestones}" if milestones else "each epoch"
        return [
            *super().phases(),
            Phase("gradual", self.config.epochs, f"one more layer group thaws {when}, {_rates(self)}"),
        ]

    def thawed_groups(self, total: int, epoch: int) -> int:
        milestones = self.options.unfreeze_milestones
        thawed = 1 + sum(epoch >= m for m in milestones) if milestones is not None else 1 + epoch
        return min(total, 1 + thawed)  # the head, plus `thawed` groups below it
