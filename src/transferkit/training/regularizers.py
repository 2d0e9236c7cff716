"""Regularizers of fine-tuning, registered by name; ``none`` is the base class itself."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from transferkit import catalog
from transferkit.config import MethodSpec, NoOptions, TrainConfig, create_method, resolved_spec
from transferkit.registry import Registry
from transferkit.training.method_options import L2SPOptions


class Regularizer:
    """Base class, and the ``none`` regularizer: nothing added to the loss.

    Hooks: `bind` once with the network before training; `penalty` per step (None: nothing);
    `decays` says whether weight decay still applies to a parameter group.
    """

    name = "none"
    Options: ClassVar[type] = NoOptions
    argument: ClassVar[str | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def spec(self) -> MethodSpec:
        return resolved_spec(self.name, self.options)

    def bind(self, model: nn.Module, head: nn.Module) -> None:
        """Called once with the pretrained network (its new head included) before any training."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def decays(self, group_name: str) -> bool:
        return True


regularizers: Registry[type[Regularizer]] = catalog.regularizers
regularizers.register("none")(Regularizer)


@regularizers.register("l2-sp")
class L2SP(Regularizer):
    """L2-SP (Li, Grandvalet & Davis, ICML 2018): pull the backbone toward its pretrained weights.

    Penalty: ``strength / 2 * sum_i ||w_i - w_i^0||^2`` over the backbone's trainable weights; it
    replaces weight decay there (decay would pull toward zero, not the start); the head keeps decay.
    """

    Options = L2SPOptions
    name = "l2-sp"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.anchor: dict[str, torch.Tensor] = {}

    def bind(self, model: nn.Module, head: nn.Module) -> None:
        # outside the state dict, so checkpoints stay small; a resumed run binds the same pretrained weights
        head_ids = {id(p) for p in head.parameters()}
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in head_ids}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return self.options.strength / 2 * self.distance(model)

    def distance(self, model: nn.Module) -> torch.Tensor:
        """Squared distance of the trainable backbone weights to the pretrained ones."""
        named = dict(model.named_parameters())
        total = torch.zeros(())
        for name, start in self.anchor.items():
            param = named[name]
            if param.requires_grad:
                total = total.to(param.device) + (param - start.to(param.device)).square().sum()
        return total

    def decays(self, group_name: str) -> bool:
        return group_name == "head"


def create_regularizer(config: TrainConfig) -> Regularizer:
    """The regularizer ``train.regularizer`` names, with its options checked."""
    return create_method(regularizers, config.regularizer, "train.regularizer")
