"""Several labels from one network: the task's classifier and, beside it on the same pooled features,
a linear head for each other label of the images (ELPV: a cell's defect and its crystal type). The
network's logits are the task's, then each other label's, side by side; one forward pass gives them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TaskHeads(nn.Module):
    """The task's head followed by the other labels' heads, in order, on the same features."""

    def __init__(self, task: nn.Module, others: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.task = task
        self.others = nn.ModuleList(others)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.task(features), *(head(features) for head in self.others)], dim=1)


def install_task_heads(model: nn.Module, others: Sequence[nn.Linear]) -> None:
    """Puts `others` beside the model's classifier (timm's ``get_classifier()``), in place."""
    task = model.get_classifier()  # type: ignore[operator]
    name = next(name for name, module in model.named_modules() if module is task)
    model.set_submodule(name, TaskHeads(task, others))


def head_tensors(heads: Sequence[nn.Linear]) -> dict[str, torch.Tensor]:
    """The heads' weights by position, for a safetensors file: ``0.weight``, ``0.bias``, ``1.weight``..."""
    return {
        f"{index}.{name}": tensor.detach().cpu().contiguous()
        for index, head in enumerate(heads)
        for name, tensor in head.state_dict().items()
    }


def heads_from_tensors(tensors: dict[str, torch.Tensor], count: int) -> list[nn.Linear]:
    """The `count` linear heads `head_tensors` wrote. Raises KeyError for a missing tensor."""
    heads = []
    for index in range(count):
        weight, bias = tensors[f"{index}.weight"], tensors[f"{index}.bias"]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight, "bias": bias})
        heads.append(head)
    return heads
