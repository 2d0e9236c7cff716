"""The FinetuneStrategy interface: which parameters train, at which rates, in which epochs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from transferkit import catalog
from transferkit.config import MethodSpec, NoOptions, TrainConfig, create_method, resolved_spec
from transferkit.data.cache import SplitImages
from transferkit.models.backbone import Backbone
from transferkit.registry import Registry
from transferkit.training.head import fit_head


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
        adapt: structural changes to the network (adapters); also when a run resumes.
        prepare: work before the epoch loop, e.g. fitting the head on frozen features; a resumed run
            skips it, because its checkpoint holds the result.
        param_groups: every parameter that trains in some epoch, with its learning rate.
        set_trainable: which parameters train in a given epoch; called at every batch, so a resumed run
            never trains with the wrong layers frozen.
        finalize: before evaluation and export, e.g. merging adapters into the weights.

    The default is group-wise: the top `thawed_groups` layer groups train, each at
    ``lr * lr_decay**depth`` below the head (discriminative rates, Howard & Ruder 2018).
    """

    name = "base"
    Options: ClassVar[type] = NoOptions  # the strategy's own options, a dataclass of config `option`s
    argument: ClassVar[str | None] = None  # the option that ``name:VALUE`` sets (``partial:2``)
    default_lr_decay = 1.0
    fits_head_first = True  # a linear probe on frozen features before any gradient step

    def __init__(self, config: TrainConfig, options: Any = None) -> None:
        self.config = config
        self.options = options if options is not None else self.Options()
        self.lr = float(config.lr) if config.lr != "auto" else float("nan")  # "auto": set by the range test

    def with_rate(self, lr: float) -> FinetuneStrategy:
        """A copy at top rate `lr` (found by a range test): the configured strategy, shared by every
        model of a cross-validated run, stays as configured."""
        rated = copy.copy(self)
        rated.lr = lr
        return rated

    def spec(self) -> MethodSpec:
        """The strategy with every option, as config.yaml records it."""
        return resolved_spec(self.name, self.options)

    @property
    def lr_decay(self) -> float:
        return self.config.lr_decay if self.config.lr_decay is not None else self.default_lr_decay

    def phases(self) -> list[Phase]:
        head = [Phase("head", 0, "logistic-regression head on frozen, cached features (L-BFGS)")]
        return head if self.fits_head_first else []

    @property
    def train_epochs(self) -> int:
        """Epochs of gradient training through the backbone (the Lightning loop)."""
        return sum(p.epochs for p in self.phases())  # phases outside the loop, like the head, have none

    def adapt(self, backbone: Backbone) -> None:
        """Structural changes before training (and before a checkpoint is loaded into the network)."""

    def prepare(
        self, backbone: Backbone, normalize: nn.Module, train: SplitImages, val: SplitImages
    ) -> dict[str, Any]:
        """Runs before the epoch loop; returns facts for the history (e.g. validation accuracy)."""
        if not self.fits_head_first:
            return {}
        return fit_head(backbone, normalize, train, val)

    def thawed_groups(self, total: int, epoch: int) -> int:
        """How many layer groups, counted from the head down, train in `epoch` (the head is one)."""
        return total

    def param_groups(self, backbone: Backbone) -> list[dict[str, Any]]:
        groups = backbone.layer_groups()
        top = len(groups) - 1
        lowest = len(groups) - max(
            self.thawed_groups(len(groups), e) for e in range(max(1, self.train_epochs))
        )
        return [
            {"params": params, "lr": self.lr * self.lr_decay ** (top - depth), "name": group_name(depth, top)}
            for depth, params in enumerate(groups)
            if depth >= lowest
        ]

    def set_trainable(self, backbone: Backbone, epoch: int) -> None:
        groups = backbone.layer_groups()
        lowest = len(groups) - self.thawed_groups(len(groups), epoch)
        for depth, params in enumerate(groups):
            for param in params:
                param.requires_grad_(depth >= lowest)

    def finalize(self, backbone: Backbone) -> None:
        """Leaves the network in its plain, exportable form."""


def group_name(depth: int, top: int) -> str:
    return "head" if depth == top else f"group {depth}"


def freeze_all_but(backbone: Backbone, trainable: list[nn.Parameter]) -> None:
    keep = {id(p) for p in trainable}
    for param in backbone.model.parameters():
        param.requires_grad_(id(param) in keep)


strategies: Registry[type[FinetuneStrategy]] = catalog.strategies


def create_strategy(config: TrainConfig) -> FinetuneStrategy:
    """The strategy ``train.strategy`` names, with its options checked."""
    return create_method(strategies, config.strategy, "train.strategy", config)
