"""Several labels from one network: the task's classifier and, beside it on the same pooled features,
a linear head for each other label of the images (ELPV: a cell's defect and its crystal type). The
network's logits are the task's, then each other label's, side by side; one forward pass gives them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from transferkit.models.ensemble import Ensemble, networks


class TaskHeads(nn.Module):
    """The task's head followed by the other labels' heads, in order, on the same features."""

    def __init__(self, task: nn.Module, others: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.task = task
        self.others = nn.ModuleList(others)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.task(features), *(head(features) for head in self.others)], dim=1)


def install_task_heads(model: nn.Module, others: Sequence[Sequence[nn.Linear]]) -> None:
    """Puts the other labels' heads beside the model's classifier (timm's ``get_classifier()``), in place.

    `others` holds, per other label, one head per network: one for a single network, one per member for
    an `Ensemble` (whose members then each give every label, and which averages each label on its own).
    """
    members = networks(model)
    task_classes = int(members[0].get_classifier().out_features)  # type: ignore[operator]
    for position, member in enumerate(members):
        _install(member, [heads[position] for heads in others])
    if isinstance(model, Ensemble):
        model.segments = (task_classes, *(heads[0].out_features for heads in others))


def _install(network: nn.Module, others: Sequence[nn.Linear]) -> None:
    task = network.get_classifier()  # type: ignore[operator]
    name = next(name for name, module in network.named_modules() if module is task)
    network.set_submodule(name, TaskHeads(task, others))


def head_tensors(others: Sequence[Sequence[nn.Linear]]) -> dict[str, torch.Tensor]:
    """The heads' weights by position, for a safetensors file: ``0.weight``, ``0.bias``, ``1.weight``...
    for one network; ``0.1.weight`` (label 0, member 1) ... for an ensemble's members."""
    tensors = {}
    for index, heads in enumerate(others):
        for member, head in enumerate(heads):
            key = _key(index, member, len(heads))
            tensors.update(
                {f"{key}.{name}": t.detach().cpu().contiguous() for name, t in head.state_dict().items()}
            )
    return tensors


def _key(index: int, member: int, members: int) -> str:
    return f"{index}.{member}" if members > 1 else f"{index}"


def heads_from_tensors(
    tensors: dict[str, torch.Tensor], count: int, members: int = 1
) -> list[list[nn.Linear]]:
    """The linear heads `head_tensors` wrote: `count` labels, `members` heads each. Raises KeyError for a
    missing tensor."""
    others = []
    for index in range(count):
        heads = []
        for member in range(members):
            key = _key(index, member, members)
            weight, bias = tensors[f"{key}.weight"], tensors[f"{key}.bias"]
            head = nn.Linear(weight.shape[1], weight.shape[0])
            head.load_state_dict({"weight": weight, "bias": bias})
            heads.append(head)
        others.append(heads)
    return others
