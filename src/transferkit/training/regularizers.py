"""Regularizers of fine-tuning, registered by name; ``none`` is the base class itself."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import nn

from transferkit import catalog
from transferkit.config import MethodSpec, NoOptions, TrainConfig, create_method, resolved_spec
from transferkit.errors import ConfigError, ModelError
from transferkit.models import Backbone, resolve_model
from transferkit.registry import Registry
from transferkit.training.method_options import L2SPOptions

logger = logging.getLogger(__name__)


class Regularizer:
    """Base class, and the ``none`` regularizer: nothing added to the loss.

    Hooks: `bind` once with the network before training (`bind_backbone` first, for a regularizer that
    needs more of the model than its network); `penalty` per step (None: nothing); `decays` says whether
    weight decay still applies to a parameter group.
    """

    name = "none"
    Options: ClassVar[type] = NoOptions
    argument: ClassVar[str | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def spec(self) -> MethodSpec:
        return resolved_spec(self.name, self.options)

    def bind_backbone(self, backbone: Backbone) -> None:
        """Called once with the pretrained Backbone (its new head included) before any training."""
        self.bind(backbone.model, backbone.head())

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
    ``toward: ancestor`` takes w^0 from the pretrained model a ``run:`` start's line began with (the
    root of its ancestry, e.g. the ImageNet weights under a cat-vs-dog run): a chained transfer keeps
    the generic features, not the previous task's.
    """

    Options = L2SPOptions
    name = "l2-sp"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.anchor: dict[str, torch.Tensor] = {}

    def bind_backbone(self, backbone: Backbone) -> None:
        super().bind_backbone(backbone)
        if self.options.toward == "ancestor":
            spec, ancestor = load_ancestor(backbone)
            kept = {n: p.detach() for n, p in ancestor.named_parameters()}
            same = [n for n, start in self.anchor.items() if n in kept and kept[n].shape == start.shape]
            if not same:
                raise ConfigError(
                    f"l2-sp toward: ancestor: no weight of {backbone.spec} matches {spec} by name and shape "
                    "(another architecture, or adapters around the weights). Use toward: start."
                )
            self.anchor.update({n: kept[n].clone() for n in same})
            logger.info("l2-sp pulls %d of %d tensors toward %s", len(same), len(self.anchor), spec)

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


def load_ancestor(backbone: Backbone) -> tuple[str, nn.Module]:
    """The spec and network of the pretrained model `backbone`'s line began with: the last model of its
    ancestry, which must have recorded weights, checked against their recorded SHA-256.

    Raises:
        ConfigError: `backbone` is no ``run:`` model with a pretrained ancestor.
        ModelError: the ancestor's weights are not the ones the run was trained from.
    """
    root = backbone.ancestry[-1] if backbone.ancestry else {}
    if not (root.get("spec") and root.get("weights_sha256")):  # none, or a random-init root
        raise ConfigError(
            f"l2-sp toward: ancestor needs a run: start whose bundle records a pretrained ancestor; "
            f"{backbone.spec} has none. Use toward: start."
        )
    spec = str(root["spec"])
    ancestor = resolve_model(spec)
    if ancestor.weights_sha256 != root["weights_sha256"]:
        raise ModelError(
            f"The weights of {spec}, {backbone.spec}'s ancestor, changed since that run was trained "
            f"(SHA-256 {ancestor.weights_sha256}, recorded {root['weights_sha256']}). Use toward: start."
        )
    return spec, ancestor.model


def create_regularizer(config: TrainConfig) -> Regularizer:
    """The regularizer ``train.regularizer`` names, with its options checked."""
    return create_method(regularizers, config.regularizer, "train.regularizer")
