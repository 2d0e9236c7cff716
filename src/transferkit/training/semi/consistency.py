"""FixMatch's consistency term (Sohn et al., NeurIPS 2020): a confident prediction on a weakly
augmented unlabeled image becomes the target for a strongly augmented view of the same image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.transforms.augment import ImageTransform


@dataclass
class Consistency:
    """What one step adds for the pool: the masked loss, how many targets were used and right, and the
    weak view's prediction for each drawn pool image (what FlexMatch learns its thresholds from)."""

    loss: torch.Tensor
    used: int
    correct: int  # among used targets whose true label is known (a label budget hid it)
    known: int
    drawn: torch.Tensor  # (count,) pool positions
    confidence: torch.Tensor  # (count,) the weak view's top probability
    predicted: torch.Tensor  # (count,) and its class


def consistency_loss(
    model: nn.Module,
    normalize: nn.Module,
    pool: torch.Tensor,
    pool_labels: torch.Tensor,
    *,
    count: int,
    weak: ImageTransform | None,
    strong: ImageTransform,
    thresholds: torch.Tensor,
) -> Consistency:
    """FixMatch's unlabeled term on `count` pool images drawn with the current random state; a weak
    view's prediction becomes a target when its confidence reaches its class's entry of `thresholds`."""
    drawn = torch.randint(len(pool), (count,))
    images = pool[drawn]
    weak_images = torch.stack([weak(image) for image in images]) if weak is not None else images
    strong_images = torch.stack([strong(image) for image in images])
    with torch.no_grad():
        confidence, targets = model(normalize(weak_images)).softmax(1).max(1)
    mask = (confidence >= thresholds.to(confidence.device)[targets]).float()
    per_image = F.cross_entropy(model(normalize(strong_images)), targets, reduction="none")
    truth = pool_labels[drawn].to(targets.device)
    used = mask.bool()
    known = used & (truth >= 0)
    return Consistency(
        loss=(per_image * mask).mean(),
        used=int(used.sum()),
        correct=int((targets[known] == truth[known]).sum()),
        known=int(known.sum()),
        drawn=drawn,
        confidence=confidence.detach().cpu(),
        predicted=targets.detach().cpu(),
    )
