"""Frozen lower layers computed once: their outputs are cached and the epoch loop trains only the top.

When no layer below some module trains and the training images are not augmented, every epoch would
recompute the same activations there. `cached_prefix` computes them once, swaps the frozen modules
for identities so the network starts at the cut, and puts everything back afterwards. The swap is
checked: the cut network on cached activations must give the full network's outputs, else the run
goes on uncached (a model whose forward pass is not a plain chain of its modules).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.progress import progress_task
from transferkit.training.inference import run_batched
from transferkit.training.module import TransferModule

logger = logging.getLogger(__name__)

MAX_CACHE_BYTES = 4 * 2**30  # activations beyond this stay uncached


class _Captured(Exception):  # control flow: stops the forward pass at the cut
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def cut_point(model: nn.Module, trained: set[int]) -> str | None:
    """The largest module, at the bottom of what trains, whose parameters all train; None if none."""
    params = list(model.named_parameters())
    first = next((name for name, p in params if id(p) in trained), None)
    if first is None or id(params[0][1]) in trained:
        return None  # nothing trains, or the very first layer does
    parts = first.split(".")[:-1]
    cut = None
    for depth in range(len(parts), 0, -1):
        candidate = ".".join(parts[:depth])
        if all(id(p) in trained for p in model.get_submodule(candidate).parameters()):
            cut = candidate
    return cut


def modules_before(model: nn.Module, cut: str) -> list[str]:
    """Names of the modules that run before `cut`: its earlier siblings at every level above it."""
    names, parent = [], model
    path = cut.split(".")
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth])
        for name, _ in parent.named_children():
            if name == part:
                break
            names.append(f"{prefix}.{name}" if prefix else name)
        parent = parent.get_submodule(part)
    return names


def _activations(
    module: TransferModule, cut: str, images: torch.Tensor, on_batch: Callable[[int], None] | None = None
) -> torch.Tensor:
    target = module.model.get_submodule(cut)

    def capture(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        raise _Captured(inputs[0])

    def until_cut(batch: torch.Tensor) -> torch.Tensor:
        try:
            module(batch)
        except _Captured as captured:
            return captured.value
        raise RuntimeError(f"{cut} never ran")

    handle = target.register_forward_pre_hook(capture)
    try:
        return run_batched(module, until_cut, images, on_batch=on_batch)
    finally:
        handle.remove()


@contextmanager
def cached_prefix(module: TransferModule, data: dict[str, SplitImages]) -> Iterator[dict[str, SplitImages]]:
    """Yields train and val splits as cached activations, with the network cut to match; or as given."""
    trained = {id(p) for group in module.strategy.param_groups(module.backbone) for p in group["params"]}
    cut = cut_point(module.model, trained)
    if cut is None or not _fits_in_memory(module, cut, data):
        yield data
        return
    before = modules_before(module.model, cut)
    splits = {name: data[name] for name in ("train", "val")}
    with progress_task(
        f"cache frozen layers below {cut}", sum(len(s.images) for s in splits.values())
    ) as step:
        cached = {
            name: replace(s, images=_activations(module, cut, s.images, step)) for name, s in splits.items()
        }
    originals = {name: module.model.get_submodule(name) for name in before}
    normalize = module.normalize
    sample = data["train"].images[:4]
    expected = run_batched(module, module, sample)
    _swap(module.model, {name: nn.Identity() for name in before})
    module.normalize = nn.Identity()
    try:
        if not torch.allclose(run_batched(module, module, cached["train"].images[:4]), expected, atol=1e-4):
            logger.warning(
                "Frozen layers below %s cannot be cached for this network; training runs uncached.", cut
            )
            _restore(module, originals, normalize)
            yield data
            return
        yield {**data, **cached}
    finally:
        _restore(module, originals, normalize)


def _fits_in_memory(module: TransferModule, cut: str, data: dict[str, SplitImages]) -> bool:
    sample = _activations(module, cut, data["train"].images[:1])
    images = len(data["train"].images) + len(data["val"].images)
    return sample.numel() * sample.element_size() * images <= MAX_CACHE_BYTES


def _swap(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    for name, replacement in replacements.items():
        parent_name, _, child = name.rpartition(".")
        model.get_submodule(parent_name).register_module(child, replacement)


def _restore(module: TransferModule, originals: dict[str, nn.Module], normalize: nn.Module) -> None:
    _swap(module.model, originals)
    module.normalize = normalize
