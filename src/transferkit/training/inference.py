"""Batched inference on cached images: frozen features and test predictions share one loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def inference_device() -> torch.device:
    """The accelerator Lightning's `accelerator="auto"` would pick for training, or the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def run_batched(
    model: nn.Module,
    compute: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """`compute` on `images` in batches with `model` in inference mode on the inference device.

    The model's train/eval mode is restored afterwards; results come back on the CPU.
    """
    was_training = model.training
    device = inference_device()
    model.eval().to(device)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        chunks.append(compute(batch).cpu())
        if on_batch is not None:
            on_batch(len(batch))
    model.train(was_training)
    return torch.cat(chunks)
