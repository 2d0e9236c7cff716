"""Frozen-backbone features, computed once per image and reused by linear heads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.models.backbone import Backbone
from transferkit.models.ordinal import class_log_probabilities
from transferkit.training.fast_inference import CheckedModule, relative_difference

FEATURE_TOLERANCE = 1e-4  # onnxruntime's features may differ from PyTorch's by this, relative to their scale


class FeatureNetwork(nn.Module):
    """Normalization and the backbone up to its pooled pre-logit features: uint8 (N, C, H, W) ->
    (N, num_features)."""

    def __init__(self, backbone: Backbone, normalize: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.model = backbone.model  # registered, so the translation to ONNX sees its weights
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.normalize(pixels))


@contextmanager
def feature_network(
    backbone: Backbone, normalize: nn.Module, elements: int
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """The backbone's pooled features as a function of uint8 batches (N, C, H, W), in inference mode,
    for a job of `elements` input values in all; the backbone's train/eval mode is restored on exit.

    On a CPU, a job large enough to pay for a translation runs on onnxruntime once its features match
    PyTorch's on the first images (`CheckedModule`).
    """
    was_training = backbone.model.training
    network = CheckedModule(
        FeatureNetwork(backbone, normalize), difference=relative_difference, tolerance=FEATURE_TOLERANCE
    )
    try:
        yield network.for_work(elements)
    finally:
        backbone.model.train(was_training)


def extract_feature_sets(
    backbone: Backbone,
    normalize: nn.Module,
    image_sets: Sequence[torch.Tensor],
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Pooled features of each set of uint8 images (N, C, H, W), (N, num_features) each, through one
    network: the sets share one translation."""
    empty = torch.empty(0, backbone.num_features)
    with feature_network(backbone, normalize, sum(images.numel() for images in image_sets)) as run:
        return [
            run_in_batches(run, images, batch_size, on_batch) if len(images) else empty
            for images in image_sets
        ]


def extract_features(
    backbone: Backbone,
    normalize: nn.Module,
    images: torch.Tensor,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Pooled features of uint8 images (N, C, H, W) with the backbone in inference mode; (N, num_features)."""
    (features,) = extract_feature_sets(backbone, normalize, [images], batch_size, on_batch)
    return features


def run_in_batches(
    run: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """`run` over `images` in batches of `batch_size`, outputs concatenated; `on_batch` gets each batch's
    size once it has run."""
    chunks = []
    for batch in images.split(batch_size):
        chunks.append(run(batch))
        if on_batch is not None:
            on_batch(len(batch))
    return torch.cat(chunks)


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    l2: float,
    max_iter: int = 300,
    *,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on fixed features, solved to convergence with L-BFGS.

    Objective: mean cross-entropy(features @ W.T + b, labels) + l2 * ||W||^2. The objective is strictly
    convex, so `start` (W, b), e.g. the solution at a stronger `l2`, changes only how fast it converges
    when `max_iter` steps reach the optimum; where they stop short (ELPV's 1,771 Lite0 features at
    l2 = 1e-4), the warm start ends closer to it.

    Shape:
        features: (N, D); labels: (N,). Returns W: (num_classes, D), b: (num_classes,).
    """
    weight = torch.zeros(num_classes, features.shape[1]) if start is None else start[0].detach().clone()
    bias = torch.zeros(num_classes) if start is None else start[1].detach().clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_ordinal_head(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float, max_iter: int = 300
) -> dict[str, torch.Tensor]:
    """A cumulative-link (proportional-odds) model on fixed features, solved with L-BFGS.

    Objective: mean negative log-likelihood of `CumulativeLinkHead` + l2 * ||w||^2. It starts from
    w = 0 with the thresholds at the logits of the classes' cumulative frequencies, which is the
    maximum-likelihood fit without features.

    Shape:
        features: (N, D); labels: (N,). Returns ``weight`` (1, D) and ``cutpoints`` (num_classes - 1,).
    """
    weight = torch.zeros(1, features.shape[1], requires_grad=True)
    cutpoints = _marginal_cutpoints(labels, num_classes).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, cutpoints], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        log_probabilities = class_log_probabilities(features @ weight.T, cutpoints)
        loss = F.nll_loss(log_probabilities, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return {"weight": weight.detach(), "cutpoints": cutpoints.detach()}


def _marginal_cutpoints(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cutpoints whose thresholds are the logits of the cumulative class frequencies (smoothed by one
    image per class, so an empty class keeps a finite gap)."""
    counts = torch.bincount(labels, minlength=num_classes).double() + 1
    cumulative = (counts.cumsum(0) / counts.sum())[:-1]
    theta = torch.logit(cumulative)
    gaps = theta.diff()
    return torch.cat([theta[:1], torch.log(torch.expm1(gaps))]).float()
