"""Imbalanced classes: a class-weighted loss or class-balanced batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

SKEW = 3.0  # `auto` weights the loss when the largest class has more than this many times the smallest


def resolve_balance(mode: str, counts: Sequence[int]) -> str:
    """`auto` becomes `weights` for skewed classes, else `none`; other modes stay as they are."""
    if mode != "auto":
        return mode
    present = [c for c in counts if c]
    return "weights" if present and max(present) > SKEW * min(present) else "none"


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse class frequencies, scaled so a balanced set gets weight 1 everywhere."""
    counts_t = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1)
    return counts_t.sum() / (len(counts) * counts_t)


def sample_weights(labels: torch.Tensor, counts: Sequence[int]) -> list[float]:
    """Per-image weights under which every class is drawn equally often."""
    return class_weights(counts)[labels].tolist()
