"""Gives networks from torchvision and transformers the timm interface that Backbone relies on.

The network's own output layer is replaced by an identity, so its forward pass yields the pooled
pre-logit features with the pooling, norms and token choice its authors wrote; a new linear head sits
on top. Layer groups follow the order the network registers its modules in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]

# Fewer groups than this at one level, or one container holding this share of the parameters,
# means the stages sit one level down (torchvision's `features`, a transformer's `encoder.layer`).
MIN_GROUPS = 3
_DOMINANT = 0.9


class FeatureNetwork(nn.Module):
    """A network whose output layer was taken out and put back as `head`, behaving like a timm model.

    Args:
        body: the network with an identity where its output layer was; `features(body, images)` must give
            pooled features of shape (N, num_features).
        head: the original output layer (so the pretrained model still predicts its own classes) until
            `reset_classifier` replaces it.
        features: how to call `body`; by default ``body(images)``.
    """

    def __init__(self, body: nn.Module, head: nn.Linear, features: FeatureFn | None = None) -> None:
        super().__init__()
        self.body = body
        self.num_features = head.in_features
        self.head: nn.Module = head
        self._features = features or _call

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self._features(self.body, images).flatten(1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)

    def group_matcher(self, coarse: bool = True) -> Callable[[str], int]:
        """Maps a parameter name to its layer group index, input side first, as timm's matchers do."""
        groups = {name: index for index, group in enumerate(registration_groups(self.body)) for name in group}
        head = len(set(groups.values()))
        return lambda name: groups.get(name.removeprefix("body."), head)


def registration_groups(module: nn.Module, prefix: str = "") -> list[list[str]]:
    """Parameter names in groups: the stem, then each stage, in the order the module registers them.

    Consecutive leaf layers (a stem's conv and norm) share a group and each container child is a group;
    when that gives fewer than MIN_GROUPS, or the largest container holds nearly all parameters, that
    container is split into its own groups.
    """
    children = [(name, child) for name, child in module.named_children() if _num_params(child)]
    containers = [name for name, child in children if not _is_leaf(child)]
    leaf_runs = sum(
        1 for i, (_, c) in enumerate(children) if _is_leaf(c) and (i == 0 or not _is_leaf(children[i - 1][1]))
    )
    largest = max(containers, key=lambda name: _num_params(module.get_submodule(name)), default=None)
    dominant = largest is not None and _num_params(module.get_submodule(largest)) >= _DOMINANT * _num_params(
        module
    )
    split = largest if dominant or len(containers) + leaf_runs < MIN_GROUPS else None
    groups: list[list[str]] = []
    pending = [prefix + name for name, _ in module.named_parameters(recurse=False)]
    for name, child in children:
        names = [f"{prefix}{name}.{param}" for param, _ in child.named_parameters()]
        if _is_leaf(child):
            pending += names
            continue
        groups += [pending] if pending else []
        pending = []
        groups += registration_groups(child, f"{prefix}{name}.") if name == split else [names]
    return groups + ([pending] if pending else [])


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _is_leaf(module: nn.Module) -> bool:
    """A layer that holds parameters itself and has no children that do (a conv, a norm)."""
    return not any(_num_params(child) for child in module.children())


def take_output_layer(network: nn.Module) -> nn.Linear:
    """Replaces the last registered nn.Linear (the output layer) with an identity and returns it."""
    linears = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{network.__class__.__name__} has no linear output layer to replace.")
    name, last = linears[-1]
    parent_name, _, attribute = name.rpartition(".")
    setattr(network.get_submodule(parent_name), attribute, nn.Identity())
    return last


def _call(body: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return body(images)
