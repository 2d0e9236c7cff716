"""The ordinal head: a cumulative-link (proportional-odds) model whose output is class log-probabilities.

McCullagh, "Regression Models for Ordinal Data", JRSS B 1980: one score ``s = w · x`` per image and
ordered thresholds ``θ_1 < ... < θ_{K-1}``; ``P(y <= k | x) = σ(θ_k - s)``. The class probabilities are
the differences of consecutive cumulative ones, so they are non-negative and sum to one by construction,
and the cumulative probabilities are monotone in ``k`` for every image (rank-consistent, unlike
independent binary heads). The thresholds are kept ordered by parametrizing the gaps as softplus of
free numbers: ``θ_k = θ_{k-1} + softplus(δ_k)``.

The head returns log-probabilities, not logits: the cross-entropy of the training loop is then exactly
the model's negative log-likelihood, and a softmax of the output (what evaluation, calibration, the
predictor, ensembles and ONNX apply) gives the class probabilities back, as for `Ensemble`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import ModelError


class CumulativeLinkHead(nn.Module):
    """Features to class log-probabilities of ordered classes through one score and K - 1 thresholds.

    Attributes:
        weight: the score's weights, (1, in_features); the thresholds take the place of a bias.
        cutpoints: ``θ_1`` then the free gap parameters ``δ_2 .. δ_{K-1}``, (K - 1,).

    Shape:
        input: (N, in_features) pooled features.
        output: (N, K) log-probabilities, ``log(σ(θ_k - s) - σ(θ_{k-1} - s))`` with θ_0 = -∞, θ_K = +∞.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ModelError(f"An ordinal head needs at least two classes, not {num_classes}.")
        self.in_features = in_features
        self.out_features = num_classes
        self.weight = nn.Parameter(torch.zeros(1, in_features))
        # Thresholds one logit apart, centred on zero: softplus(log(e - 1)) = 1.
        gaps = torch.full((num_classes - 2,), float(torch.log(torch.expm1(torch.tensor(1.0)))))
        self.cutpoints = nn.Parameter(torch.cat([torch.tensor([-(num_classes - 2) / 2]), gaps]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return class_log_probabilities(features @ self.weight.T, self.cutpoints)

    def cumulative(self, features: torch.Tensor) -> torch.Tensor:
        """``P(y > k | x)`` for k = 0 .. K - 2, (N, K - 1): non-increasing along k for every image."""
        return torch.sigmoid(features @ self.weight.T - thresholds(self.cutpoints))


def thresholds(cutpoints: torch.Tensor) -> torch.Tensor:
    """The ordered thresholds ``θ_1 < ... < θ_{K-1}`` from ``θ_1`` and the gap parameters; (K - 1,)."""
    return torch.cumsum(torch.cat([cutpoints[:1], F.softplus(cutpoints[1:])]), dim=0)


def class_log_probabilities(scores: torch.Tensor, cutpoints: torch.Tensor) -> torch.Tensor:
    """Class log-probabilities of a cumulative-link model, computed without subtracting probabilities.

    ``σ(b) - σ(a) = σ(b) σ(-a) (1 - e^{a-b})`` for ``a < b``, and with the gap ``b - a = softplus(δ)``,
    ``log(1 - e^{-softplus(δ)}) = log σ(δ)``, so each middle class is a sum of three log-sigmoids:
    ``log p_k = log σ(θ_k - s) + log σ(s - θ_{k-1}) + log σ(δ_k)``; nothing underflows to log 0.

    Shape:
        scores: (N, 1); cutpoints: (K - 1,). Returns (N, K).
    """
    theta = thresholds(cutpoints)
    at_most = F.logsigmoid(theta - scores)  # log P(y <= k), k = 0 .. K - 2
    above = F.logsigmoid(scores - theta)  # log P(y > k)
    zero = torch.zeros_like(scores)
    gaps = zero + F.logsigmoid(cutpoints[1:])  # (N, K - 2) by broadcasting: no batch size in an export
    return torch.cat([at_most, zero], 1) + torch.cat([zero, above], 1) + torch.cat([zero, gaps, zero], 1)


def install_ordinal_head(model: nn.Module) -> CumulativeLinkHead:
    """Replaces the model's linear classifier (timm's ``get_classifier()``) by a `CumulativeLinkHead` with
    as many classes; returns the new head."""
    linear = model.get_classifier()  # type: ignore[operator]
    if not isinstance(linear, nn.Linear):
        raise ModelError(
            f"{type(model).__name__} has a {type(linear).__name__} classifier; train.task ordinal needs a "
            "linear one. Choose another model, or train.task classification."
        )
    name = next(name for name, module in model.named_modules() if module is linear)
    head = CumulativeLinkHead(linear.in_features, linear.out_features)
    model.set_submodule(name, head)
    return head


def is_ordinal(model: nn.Module) -> bool:
    """Whether the network predicts through cumulative-link heads (an ensemble: each member does)."""
    return any(isinstance(module, CumulativeLinkHead) for module in model.modules())
