"""FixMatch (Sohn et al., NeurIPS 2020) as a semi-supervised method: the consistency term on the pool
at every training step."""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.transforms import v2

from transferkit.data.cache import SplitImages
from transferkit.training.method_options import FixMatchOptions
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

    def attach(self, pool: SplitImages, weak: ImageTransform | None) -> None:
        self.pool, self.weak, self.strong = pool, weak, strong_view(weak)

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
            threshold=self.options.threshold,
        )
        consistency.loss = self.options.weight * consistency.loss
        return consistency

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
        return f"FixMatch on the unlabeled pool, confident targets per epoch: {steps}."
