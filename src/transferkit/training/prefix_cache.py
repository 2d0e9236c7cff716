"""Frozen lower layers computed once: their outputs are cached and the epoch loop trains only the top.

When no layer below some module trains, every epoch would recompute the same activations there.
`cached_prefix` computes them once, makes the frozen modules pass their input through so the network
starts at the cut (their parameters stay, so the strategy sees the same layer groups), and puts
everything back afterwards. The bypass is checked: the cut network on cached activations must give the
full network's outputs, else the run goes on uncached (a model whose forward pass is not a plain chain
of its modules).

An augmentation that is a finite set of exact transforms (`FiniteAugment`, e.g. D4's 8 symmetries) is
cached too, and each training step picks the cached view with the same random draw the augmentation
would have made, so training is the same as recomputing. Batches and draws are fixed by the seed, so
the views training will draw are known before it starts (`planned_views`): only those are computed.
Under D4, 7 epochs draw about 4.9 of an image's 8 views, against 7 passes uncached; without a plan
(several processes) every view is computed. The cache is used only when it means fewer passes through
the frozen layers than recomputing, and it must fit in `cache_budget()`: a third of the memory
available, at most `MAX_CACHE_BYTES`; else training runs uncached. On a CPU the frozen layers run on
onnxruntime once their activations match PyTorch's (`lower_layers`), as predictions do.

Where they cannot be cached (a random augmentation such as crops, or too little memory),
`streamed_prefix` still runs them on onnxruntime, batch by batch inside each training step: nothing
below the cut trains, so it is inference. A photo task at 224 px fits 1.10x to 1.18x faster end to end
this way (benchmarks/results/speed_streamed*.md).
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
from transferkit.training.data_order import SeededBatchSampler
from transferkit.training.fast_inference import CheckedModule, relative_difference
from transferkit.training.features import FEATURE_TOLERANCE
from transferkit.training.inference import run_batched
from transferkit.training.module import TransferModule, step_seed
from transferkit.transforms.augment import FiniteAugment, ImageTransform

logger = logging.getLogger(__name__)

MAX_CACHE_BYTES = 8 * 2**30  # activations beyond this stay uncached
# Streaming translates and checks the frozen layers once per training (about 0.8 s) and saves about
# 0.04 us per input value an image pass holds (Lite0 at 224 px): below this many values over a run's
# passes (epochs x images; 500 passes at 224 px, 2,700 at 96 px) the saving is not clearly larger
# (speed_streamed: a few-label fit at 96 px, six trainings of 560 passes, took 0.94x the time).
STREAM_MIN_ELEMENTS = 500 * 3 * 224 * 224
FALLBACK_BUDGET = 4 * 2**30  # where the available memory cannot be read


class _Captured(Exception):  # control flow: stops the forward pass at the cut
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def frozen_cut(module: TransferModule) -> str | None:
    """`cut_point` for the parameters the module's strategy trains in any epoch."""
    trained = {id(p) for group in module.strategy.param_groups(module.backbone) for p in group["params"]}
    return cut_point(module.model, trained)


def images_drawn(sampler: SeededBatchSampler | None, train: SplitImages) -> int:
    """Training images an epoch draws: the sampler's batches, or every image without one."""
    return sum(map(len, sampler.batches(0))) if sampler else len(train.images)


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
        if not len(images):  # an empty split (the final model of a cross-validated run has no val)
            return run_batched(module, until_cut, images.new_zeros((1, *images.shape[1:])))[:0]
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
    """The training augmentation on cached views: one image's rows in `cached` (views,), -1 where a view
    was not planned -> the activations of the view the augmentation would have drawn, from the same
    random draw."""

    augment: FiniteAugment
    cached: torch.Tensor

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        row = int(rows[self.augment.draw()])
        if row < 0:
            raise RuntimeError("Training drew a view that planned_views did not plan; its draws differ.")
        return self.cached[row]


def planned_views(
    module: TransferModule, sampler: SeededBatchSampler, augment: FiniteAugment
) -> torch.Tensor:
    """The (image, view) pairs training will draw, (N, views) bool: every epoch's batches from the
    sampler, each step's draws replayed from its seed as `TransferModule.loss` makes them (one process).
    The random state is restored afterwards."""
    planned = torch.zeros(sampler.size, augment.views, dtype=torch.bool)
    with torch.random.fork_rng(devices=[]):
        for epoch in range(module.strategy.train_epochs):
            for number, batch in enumerate(sampler.batches(epoch)):
                torch.manual_seed(step_seed(module.seed, epoch, number, rank=0))
                for image in batch:
                    planned[image, augment.draw()] = True
    return planned


@contextmanager
def cached_prefix(
    module: TransferModule, data: dict[str, SplitImages], sampler: SeededBatchSampler | None = None
) -> Iterator[dict[str, SplitImages]]:
    """Yields train and val splits as cached activations, with the network cut to match; or as given.

    Under a `FiniteAugment`, each training image becomes its rows in the cache, one per view (-1 where
    no step draws it: `planned_views`, from the `sampler` of a one-process run), and the module's
    augmentation picks one per step; both are put back on exit.
    """
    cut = frozen_cut(module)
    train, val = data["train"], data["val"]
    finite = module.augment if isinstance(module.augment, FiniteAugment) else None
    planned = _plan(module, len(train.images), finite, sampler) if cut is not None else None
    passes = (int(planned.sum()) if planned is not None else len(train.images)) + len(val.images)
    drawn = images_drawn(sampler, train)
    uncached_passes = module.strategy.train_epochs * (drawn + len(val.images))  # images a run draws
    if cut is None or passes >= uncached_passes or not _fits_in_memory(module, cut, train, passes):
        with streamed_prefix(module, data, sampler) as streamed:
            yield streamed
        return
    sample = finite.apply(train.images[:4], 0) if finite else train.images[:4]
    entering = _activations(module, cut, sample)  # what enters the cut in the whole network
    filled = _filled(module, cut, data, planned, passes=passes, sample=(sample, entering))
    if filled is not None:
        cached, cut_data = filled
        expected = run_batched(module, module, sample)
        with (
            bypassed(module.model, modules_before(module.model, cut)),
            _on_activations(module, finite, cached),
        ):
            if torch.allclose(run_batched(module, module, entering), expected, atol=1e-4):
                yield cut_data
                return
    logger.warning("Frozen layers below %s cannot be cached for this network; training runs uncached.", cut)
    yield data


@contextmanager
def streamed_prefix(
    module: TransferModule, data: dict[str, SplitImages], sampler: SeededBatchSampler | None = None
) -> Iterator[dict[str, SplitImages]]:
    """Yields the splits as given, with the frozen layers below the cut run on onnxruntime inside each
    training step (in place of the module's normalization, which they include) while the block lasts.

    Only where onnxruntime runs them (a CPU, a run long enough to pay for the translation:
    `STREAM_MIN_ELEMENTS`, activations that match PyTorch's) and the cut network on them gives the whole
    network's outputs; else training runs as given. Unlike the cache, any augmentation may come first:
    its uint8 images enter the frozen layers.
    """
    cut = frozen_cut(module)
    train, val = data["train"], data["val"]
    if cut is None or not len(train.images):
        yield data
        return
    drawn = images_drawn(sampler, train)
    elements = module.strategy.train_epochs * (drawn + len(val.images)) * train.images[0].numel()
    if elements < STREAM_MIN_ELEMENTS:
        yield data
        return
    sample = _augmented(module, train.images[:4])
    if sample.shape[1:] != train.images.shape[1:]:  # the translation takes one image size
        yield data
        return
    entering = _activations(module, cut, sample)
    expected = run_batched(module, module, sample)
    with lower_layers(module, cut, elements, interleaved=True) as lower:
        lowered = lower(sample)  # the first batch chooses the backend
    if not (isinstance(lower, CheckedModule) and lower.backend == "onnx"):
        yield data  # PyTorch would run them in the step anyway
        return
    normalize = module.normalize
    with bypassed(module.model, modules_before(module.model, cut)):
        module.normalize = StreamedLayers(lower)
        try:
            if relative_difference(lowered, entering) <= FEATURE_TOLERANCE and torch.allclose(
                run_batched(module, module, sample), expected, atol=1e-4
            ):
                logger.info("Frozen layers below %s run on onnxruntime in every training step.", cut)
                yield data
                return
        finally:
            module.normalize = normalize
    logger.warning("Frozen layers below %s cannot run apart from this network; they run in PyTorch.", cut)
    yield data


def _augmented(module: TransferModule, images: torch.Tensor) -> torch.Tensor:
    """`images` as the module's training augmentation makes them, without touching the random state."""
    if module.augment is None:
        return images
    with torch.random.fork_rng(devices=[]):
        return torch.stack([module.augment(image) for image in images])


class StreamedLayers(nn.Module):
    """Stands in for the normalization: uint8 batches -> the activations entering the cut, computed by
    `lower` (the normalization and the frozen layers, on onnxruntime), in channels-last memory."""

    def __init__(self, lower: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.lower = lower

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.lower(images).contiguous(memory_format=torch.channels_last)


def _filled(
    module: TransferModule,
    cut: str,
    data: dict[str, SplitImages],
    planned: torch.Tensor | None,
    *,
    passes: int,
    sample: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, dict[str, SplitImages]] | None:
    """The cache: the activations entering `cut` of the validation images and the training images, or
    under a finite augmentation of the `planned` training views (train's images become each image's rows
    in them); None when the layers below `cut`, run alone, do not give what enters it on `sample`
    (images, and what enters `cut` for them in the whole network)."""
    train, val = data["train"], data["val"]
    finite = module.augment if isinstance(module.augment, FiniteAugment) else None
    images, entering = sample
    with lower_layers(module, cut, passes * images[0].numel()) as lower:
        try:
            lowered = lower(images)
        except Exception:  # not a plain chain: modules called with other inputs fail in many ways
            return None
        if lowered.shape != entering.shape or relative_difference(lowered, entering) > FEATURE_TOLERANCE:
            return None
        with progress_task(f"cache frozen layers below {cut}", passes) as step:
            val_cached = replace(val, images=in_batches(lower, val.images, step))
            if finite is not None and planned is not None:
                cached, rows = _view_activations(lower, train.images, finite, planned, on_batch=step)
                return cached, {**data, "train": replace(train, images=rows), "val": val_cached}
            train_cached = replace(train, images=in_batches(lower, train.images, step))
            return torch.empty(0), {**data, "train": train_cached, "val": val_cached}


@contextmanager
def _on_activations(
    module: TransferModule, finite: FiniteAugment | None, cached: torch.Tensor
) -> Iterator[None]:
    """The module's normalization and augmentation replaced for cached activations inside the block."""
    normalize, augment = module.normalize, module.augment
    module.normalize = ChannelsLast()
    if finite is not None:
        module.augment = PickView(finite, cached)
    try:
        yield
    finally:
        module.normalize, module.augment = normalize, augment


def _plan(
    module: TransferModule, images: int, finite: FiniteAugment | None, sampler: SeededBatchSampler | None
) -> torch.Tensor | None:
    """The (image, view) pairs to cache under a finite augmentation: the planned ones, or all without a
    sampler to plan with; None without a finite augmentation."""
    if finite is None:
        return None
    if sampler is None:
        return torch.ones(images, finite.views, dtype=torch.bool)
    return planned_views(module, sampler, finite)


def _view_activations(
    lower: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    augment: FiniteAugment,
    planned: torch.Tensor,
    *,
    on_batch: Callable[[int], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The activations (`lower`'s outputs) of the planned (image, view) pairs, (P, ...), and each image's
    rows in them, (N, views) with -1 where a view is not planned; filled one view at a time, in place."""
    total = int(planned.sum())
    rows = torch.full(planned.shape, -1, dtype=torch.long)
    rows[planned] = torch.arange(total)
    cached = torch.empty(0)
    for view in range(augment.views):
        chosen = planned[:, view].nonzero().squeeze(1)
        if not len(chosen):
            continue
        activations = in_batches(lower, augment.apply(images[chosen], view), on_batch)
        if not len(cached):
            cached = activations.new_empty((total, *activations.shape[1:]))
        cached[rows[chosen, view]] = activations
    return cached, rows


@contextmanager
def lower_layers(
    module: TransferModule, cut: str, elements: int, *, interleaved: bool = False
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """The network below `cut` (normalization included) as a function of uint8 batches, in inference
    mode, for a job of `elements` input values: on a CPU, onnxruntime once its activations match
    PyTorch's on the first images (about three times faster), else PyTorch; `interleaved` where the
    training step runs between its calls (`CheckedModule`). The module's train/eval mode is restored on
    exit."""
    was_training = module.training
    lower = nn.Sequential(module.normalize, module.model)  # the module's own layers, not copies
    with bypassed(module.model, modules_from(module.model, cut)):
        checked = CheckedModule(
            lower, difference=relative_difference, tolerance=FEATURE_TOLERANCE, interleaved=interleaved
        )
        try:
            yield checked.for_work(elements)
        finally:
            module.train(was_training)


def in_batches(
    run: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """`run` on `images` in batches, concatenated (an empty batch of `images` through it when empty)."""
    if not len(images):  # the shape of an empty split's activations still counts (cross-validated runs)
        return run(images.new_zeros((1, *images.shape[1:])))[:0]
    chunks = []
    for start in range(0, len(images), batch_size):
        chunks.append(run(images[start : start + batch_size]))
        if on_batch is not None:
            on_batch(len(chunks[-1]))
    return torch.cat(chunks)


def cache_budget() -> int:
    """Bytes the cache may take: a third of the memory available now, at most `MAX_CACHE_BYTES`."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return FALLBACK_BUDGET
    return min(MAX_CACHE_BYTES, available // 3)


def _fits_in_memory(module: TransferModule, cut: str, train: SplitImages, passes: int) -> bool:
    """Whether the activations of `passes` images at `cut` fit in `cache_budget()`."""
    sample = _activations(module, cut, train.images[:1])
    return sample.numel() * sample.element_size() * passes <= cache_budget()


def modules_from(model: nn.Module, cut: str) -> list[str]:
    """Names of the modules that run from `cut` on: `cut` and its later siblings at every level above."""
    path = cut.split(".")
    names = [cut]
    for depth in range(len(path), 0, -1):
        parent, part = ".".join(path[: depth - 1]), path[depth - 1]
        siblings = [name for name, _ in model.get_submodule(parent).named_children()]
        names += [f"{parent}.{name}" if parent else name for name in siblings[siblings.index(part) + 1 :]]
    return names


@contextmanager
def bypassed(model: nn.Module, names: list[str]) -> Iterator[None]:
    """The modules `names` pass their input through inside the block. Their parameters stay in place:
    the strategy counts layer groups from the whole network (fine-tune's frozen groups are the lowest
    ones), and checkpoints written meanwhile hold every weight."""
    for name in names:
        vars(model.get_submodule(name))["forward"] = _passthrough  # shadows the class's forward
    try:
        yield
    finally:
        for name in names:
            vars(model.get_submodule(name)).pop("forward", None)


def _passthrough(inputs: torch.Tensor) -> torch.Tensor:
    return inputs
