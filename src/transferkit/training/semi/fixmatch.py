"""FixMatch (Sohn et al., NeurIPS 2020) as a semi-supervised method: the consistency term on the pool
at every training step; FlexMatch (Zhang et al., NeurIPS 2021) with a threshold per class that follows
how well the class is learned."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from transferkit.data.cache import SplitImages
from transferkit.training.method_options import FixMatchOptions, FlexMatchOptions
from transferkit.training.semi.base import SemiMethod, semi_methods
from transferkit.training.semi.consistency import Consistency, consistency_loss
from transferkit.transforms.augment import ImageTransform


def strong_view(weak: ImageTransform | None) -> ImageTransform:
    """The weak augmentation, then TrivialAugment's photometric/geometric op and random erasing."""
    steps: list[ImageTransform] = [weak] if weak is not None else []
    return v2.Compose([*steps, v2.TrivialAugmentWide(), v2.RandomErasing(p=0.5, value=0)])


@semi_methods.register("fixmatch")
class FixMatch(SemiMethod):
    """FixMatch: each training step adds the consistency loss on `ratio` pool images per labeled one,
    counting only targets predicted with at least `threshold` confidence (Sohn et al., NeurIPS 2020).

    Objective per step: ``L = CE(labeled) + weight * mean_u 1[max p(weak u) >= threshold] *
    CE(strong u, argmax p(weak u))``.
    """

    Options = FixMatchOptions
    name = "fixmatch"
    needs_pool = True
    trains_on_pool_each_step = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.pool: SplitImages | None = None
        self.weak: ImageTransform | None = None
        self.strong: ImageTransform = strong_view(None)
        self.num_classes = 0

    def attach(self, pool: SplitImages, weak: ImageTransform | None, num_classes: int) -> None:
        self.pool, self.weak, self.strong = pool, weak, strong_view(weak)
        self.num_classes = num_classes

    def thresholds(self) -> torch.Tensor:
        """(classes,) the confidence a weak view's prediction of each class needs to become a target."""
        return torch.full((self.num_classes,), self.options.threshold)

    def step_loss(self, model: nn.Module, normalize: nn.Module, batch_size: int) -> Consistency | None:
        if self.pool is None:
            return None
        consistency = consistency_loss(
            model,
            normalize,
            self.pool.images,
            self.pool.labels,
            count=self.options.ratio * batch_size,
            weak=self.weak,
            strong=self.strong,
            thresholds=self.thresholds(),
        )
        consistency.loss = self.options.weight * consistency.loss
        self.learn(consistency)
        return consistency

    def learn(self, consistency: Consistency) -> None:
        """What a step's weak-view predictions teach the method (FixMatch: nothing)."""

    def note(self, history: list[dict[str, Any]], summary: Any) -> str | None:
        epochs = [row for row in history if row.get("pseudo_labels") is not None]
        steps = "; ".join(
            f"epoch {row['epoch']}: {int(row['pseudo_labels'])} targets"
            + (
                f" ({row['pseudo_label_accuracy']:.1%} right)"
                if row.get("pseudo_label_accuracy") is not None
                else ""
            )
            for row in epochs
        )
        return f"{self.title} on the unlabeled pool, confident targets per epoch: {steps}."

    title = "FixMatch"


@semi_methods.register("flexmatch")
class FlexMatch(FixMatch):
    """FlexMatch's curriculum pseudo-labelling (Zhang et al., NeurIPS 2021): FixMatch whose threshold
    for class c is ``M(beta_c) * threshold``, with ``M(x) = x / (2 - x)`` and ``beta_c`` the number of
    pool images whose latest weak-view prediction is c at `threshold` confidence, over the largest such
    count (or, while warming up, over the images not yet predicted confidently at all).

    A class the network has not yet learned gets targets at a lower confidence, so the pool gives
    targets from the first steps on, where FixMatch's fixed 0.95 may give almost none with few labels.
    Each pool image's latest confident class is part of the checkpoint; with several processes, each
    keeps its own, and a resume gives every process the first one's.
    """

    Options = FlexMatchOptions
    name = "flexmatch"
    title = "FlexMatch"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.learned = torch.empty(0, dtype=torch.long)  # per pool image: its confident class, or -1

    def attach(self, pool: SplitImages, weak: ImageTransform | None, num_classes: int) -> None:
        super().attach(pool, weak, num_classes)
        if len(self.learned) != len(pool.labels):  # a resumed run has loaded its own already
            self.learned = torch.full((len(pool.labels),), -1, dtype=torch.long)

    def thresholds(self) -> torch.Tensor:
        learned = self.learned[self.learned >= 0]
        counts = torch.bincount(learned, minlength=self.num_classes).float()
        largest = counts.max()
        if self.options.warmup:
            largest = torch.maximum(largest, torch.tensor(float(len(self.learned) - len(learned))))
        beta = counts / largest.clamp(min=1)
        return beta / (2 - beta) * self.options.threshold

    def learn(self, consistency: Consistency) -> None:
        confident = consistency.confidence >= self.options.threshold
        self.learned[consistency.drawn[confident]] = consistency.predicted[confident]

    def state_dict(self) -> dict[str, Any]:
        return {"learned": self.learned.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "learned" in state:
            self.learned = state["learned"].clone()
