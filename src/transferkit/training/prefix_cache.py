"""Frozen lower layers computed once: their outputs are cached and the epoch loop trains only the top.

When no layer below some module trains, every epoch would recompute the same activations there.
`cached_prefix` computes them once, swaps the frozen modules for identities so the network starts at
the cut, and puts everything back afterwards. The swap is checked: the cut network on cached activations
must give the full network's outputs, else the run goes on uncached (a model whose forward pass is not a
plain chain of its modules).

An augmentation that is a finite set of exact transforms (`FiniteAugment`, e.g. D4's 8 symmetries) is
cached too: once per view and image, and each training step picks the cached view with the same random
draw the augmentation would have made, so training is the same as recomputing. That pays only when
the run has at least as many epochs as views: each image passes the frozen layers once per view instead
of once per epoch. The cache must fit in `cache_budget()`: a third of the memory available, at most
`MAX_CACHE_BYTES`; else training runs uncached.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from transferkit.data.cache import SplitImages
from transferkit.progress import progress_task
from transferkit.training.inference import run_batched
from transferkit.training.module import TransferModule
from transferkit.transforms.augment import FiniteAugment, ImageTransform

logger = logging.getLogger(__name__)

MAX_CACHE_BYTES = 8 * 2**30  # activations beyond this stay uncached
FALLBACK_BUDGET = 4 * 2**30  # where the available memory cannot be read


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


def cacheable(augment: ImageTransform | None) -> bool:
    """Whether training images under `augment` can go through cached frozen layers."""
    return augment is None or isinstance(augment, FiniteAugment)


class ChannelsLast(nn.Module):
    """Stands in for the normalization on cached activations: the memory layout it would have given
    (batches collated from cached tensors come back in the default layout, and run slower)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


@dataclass(frozen=True)
class PickView:
    """The training augmentation on cached views: the stack (views, ...) of one image -> the view the
    augmentation would have drawn, from the same random draw."""

    augment: FiniteAugment

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        return views[self.augment.draw()]


@contextmanager
def cached_prefix(module: TransferModule, data: dict[str, SplitImages]) -> Iterator[dict[str, SplitImages]]:
    """Yields train and val splits as cached activations, with the network cut to match; or as given.

    Under a `FiniteAugment`, each training image becomes the stack of its views' activations and the
    module's augmentation picks one per step; both are put back on exit.
    """
    trained = {id(p) for group in module.strategy.param_groups(module.backbone) for p in group["params"]}
    cut = cut_point(module.model, trained)
    augment = module.augment
    views = augment.views if isinstance(augment, FiniteAugment) else 1
    if cut is None or views > module.strategy.train_epochs or not _fits_in_memory(module, cut, data, views):
        yield data
        return
    before = modules_before(module.model, cut)
    train, val = data["train"], data["val"]
    with progress_task(
        f"cache frozen layers below {cut}", views * len(train.images) + len(val.images)
    ) as step:
        cached = {
            "train": replace(train, images=_train_activations(module, cut, train.images, step)),
            "val": replace(val, images=_activations(module, cut, val.images, step)),
        }
    originals = {name: module.model.get_submodule(name) for name in before}
    normalize = module.normalize
    sample = train.images[:4]
    finite = augment if isinstance(augment, FiniteAugment) else None
    expected = run_batched(module, module, finite.apply(sample, 0) if finite else sample)
    _swap(module.model, {name: nn.Identity() for name in before})
    module.normalize = ChannelsLast()
    if finite:
        module.augment = PickView(finite)
    try:
        first_view = cached["train"].images[:4, 0] if finite else cached["train"].images[:4]
        if not torch.allclose(run_batched(module, module, first_view), expected, atol=1e-4):
            logger.warning(
                "Frozen layers below %s cannot be cached for this network; training runs uncached.", cut
            )
            _restore(module, originals, normalize, augment)
            yield data
            return
        yield {**data, **cached}
    finally:
        _restore(module, originals, normalize, augment)


def _train_activations(
    module: TransferModule, cut: str, images: torch.Tensor, on_batch: Callable[[int], None]
) -> torch.Tensor:
    """The activations at `cut` of every training image, (N, ...); under a `FiniteAugment`, of every
    view of it, (N, views, ...), filled in place so the cache is never held twice."""
    augment = module.augment
    if not isinstance(augment, FiniteAugment):
        return _activations(module, cut, images, on_batch)
    first = _activations(module, cut, augment.apply(images, 0), on_batch)
    stacked = first.new_empty((len(images), augment.views, *first.shape[1:]))
    stacked[:, 0] = first
    del first
    for view in range(1, augment.views):
        stacked[:, view] = _activations(module, cut, augment.apply(images, view), on_batch)
    return stacked


def cache_budget() -> int:
    """Bytes the cache may take: a third of the memory available now, at most `MAX_CACHE_BYTES`."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return FALLBACK_BUDGET
    return min(MAX_CACHE_BYTES, available // 3)


def _fits_in_memory(module: TransferModule, cut: str, data: dict[str, SplitImages], views: int) -> bool:
    sample = _activations(module, cut, data["train"].images[:1])
    images = views * len(data["train"].images) + len(data["val"].images)
    return sample.numel() * sample.element_size() * images <= cache_budget()


def _swap(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    for name, replacement in replacements.items():
        parent_name, _, child = name.rpartition(".")
        model.get_submodule(parent_name).register_module(child, replacement)


def _restore(
    module: TransferModule,
    originals: dict[str, nn.Module],
    normalize: nn.Module,
    augment: ImageTransform | None,
) -> None:
    _swap(module.model, originals)
    module.normalize = normalize
    module.augment = augment
