"""The SemiMethod interface: how a method learns from the unlabeled pool. The training loop calls
these hooks and never branches on a method's name; ``none`` is this base class itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from transferkit import catalog
from transferkit.config import MethodSpec, NoOptions, TrainConfig, create_method, resolved_spec
from transferkit.data.cache import SplitImages
from transferkit.models.backbone import Backbone
from transferkit.registry import Registry
from transferkit.training.semi.consistency import Consistency
from transferkit.transforms.augment import ImageTransform

Splits = dict[str, SplitImages]


@dataclass(frozen=True)
class Teacher:
    """What a network fine-tuned on the labeled images alone predicts: class probabilities (averaged
    over the test-time views) of each pool image and of each validation image, and the view logits of
    the validation images for every WiSE-FT candidate, ``(candidates, views, N, classes)`` (None
    without validation images). `members` networks' probabilities are averaged: the cross-validation
    fold teachers', or one teacher's."""

    pool: torch.Tensor
    val: torch.Tensor
    val_logits: np.ndarray | None = None
    members: int = 1

    @classmethod
    def averaged(cls, pools: list[np.ndarray]) -> Teacher:
        """The mean of several teachers' pool probabilities (each trained without one cross-validation
        fold, and measured on it), with no validation images of its own."""
        pool = torch.from_numpy(np.mean(pools, axis=0))
        return cls(pool, pool.new_empty(0, pool.shape[1]), members=len(pools))


@dataclass(frozen=True)
class PoolCheck:
    """Whether the unlabeled pool helped: the run's model against its teacher (the recipe on the labeled
    images alone), on held-out labeled images (out of fold, or on validation).

    Attributes:
        without, with_pool: the accuracy of the teacher and of the model that learned from the pool.
        images: how many held-out images.
        on: which images, ``out of fold`` or ``on validation``.
        gated: the final model is the teacher where the pool did not help (``train.semi.gate``; never
            for an ensemble of fold models).
    """

    without: float
    with_pool: float
    images: int
    on: str
    gated: bool

    @property
    def helped(self) -> bool:
        return self.with_pool > self.without

    @property
    def used(self) -> bool:
        """Whether the final model learns from the pool."""
        return self.helped or not self.gated

    def note(self) -> str:
        """The check and what the final model did, in a sentence for the report."""
        measured = (
            f"{self.on.capitalize()}, the recipe on the labeled images alone (the teacher) classified "
            f"{self.without:.1%} of the {self.images} held-out labeled images right, and with the pool "
            f"(the student) {self.with_pool:.1%}"
        )
        if self.helped:
            return f"{measured}: the pool helped."
        if self.gated:
            return f"{measured}: the pool did not help, so the final model is the teacher's recipe."
        return (
            f"{measured}: the pool did not help; the final model uses it all the same (train.semi.gate "
            "is off, or the final model is the ensemble of the fold models)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "helped": self.helped, "used": self.used}


class SemiMethod:
    """Base class, and the ``none`` method: no use of the pool. Override the hooks that differ.

    Hooks, in the order training calls them:
        pseudo_label: before any training, may add pool images with pseudo-labels to train; returns
            the splits and a summary for the report. A selection saved in the run directory is read
            back, so a resumed run trains on the same images. A method that `needs_teacher` takes
            one more keyword, `teacher`: a call that trains the run's recipe on the labeled images
            alone (or reads it back, or gives the fold teachers' average) and returns its predictions
            (`Teacher`); a method that read its selection back need not call it.
        attach: the pool and the training augmentation, before the epoch loop.
        step_loss: an extra loss for one training step on pool images, or None.
        note: one sentence for the report, from the training history and the summary.
        teacher_logits: in a cross-validated run, what each fold's teacher predicted for the images the
            fold held out, from the fold's summary: the recipe without the pool, out of fold, against
            which the run measures whether the pool helped (and, where `gated`, leaves it out if not).
        teacher_pool: what each fold's teacher predicted for the pool, from the fold's summary: the
            final model takes its pseudo-labels from the fold teachers' average (each measured on the
            images its fold held out) rather than from a teacher refit on every label, measured on none.
        state_dict / load_state_dict: what the method learns while training, kept in the checkpoints
            so that a resumed run goes on exactly.
    """

    name = "none"
    Options: ClassVar[type] = NoOptions
    argument: ClassVar[str | None] = None
    needs_pool = False  # fit must provide an unlabeled pool (a label budget or --unlabeled)
    trains_on_pool_each_step = False  # the pool goes through the whole network at every step
    needs_teacher = False  # training starts with a teacher: the same recipe without the pool

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def spec(self) -> MethodSpec:
        return resolved_spec(self.name, self.options)

    def pseudo_label(
        self, backbone: Backbone, normalize: nn.Module, data: Splits, run_dir: Path, *, save: bool
    ) -> tuple[Splits, Any]:
        return data, None

    def attach(self, pool: SplitImages, weak: ImageTransform | None, num_classes: int) -> None:
        """Called before the epoch loop with the unlabeled pool, the per-image training augmentation and
        the number of classes."""

    def step_loss(self, model: nn.Module, normalize: nn.Module, batch_size: int) -> Consistency | None:
        return None

    def note(self, history: list[dict[str, Any]], summary: Any) -> str | None:
        return None

    def teacher_logits(self, summary: Any) -> np.ndarray | None:
        """The teacher's view logits of the validation images, per WiSE-FT candidate (`Teacher`), from
        a summary `pseudo_label` returned; None for a method without a teacher."""
        return None

    def teacher_pool(self, summary: Any) -> np.ndarray | None:
        """The teacher's class probabilities of the pool images (`Teacher`), from a summary
        `pseudo_label` returned; None for a method without a teacher."""
        return None

    @property
    def gated(self) -> bool:
        """Whether a cross-validated run leaves the pool out where its fold models did no better than
        their teachers on the images they held out."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` gave (an empty dict from a checkpoint without it)."""


semi_methods: Registry[type[SemiMethod]] = catalog.semi_methods
semi_methods.register("none")(SemiMethod)


def create_semi_method(config: TrainConfig) -> SemiMethod:
    """The method ``train.semi`` names, with its options checked."""
    return create_method(semi_methods, config.semi, "train.semi")
