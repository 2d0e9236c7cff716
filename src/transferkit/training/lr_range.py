"""`--lr auto`: a learning-rate range test (Smith 2017) run before training, on a copy of the weights."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from transferkit.progress import progress_task
from transferkit.training.module import TransferModule, adamw, keep_batchnorm_statistics


@dataclass(frozen=True)
class RangeTest:
    """Top-group rates tried, the smoothed loss at each, and the rate chosen."""

    rates: list[float]
    losses: list[float]
    suggestion: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RangeTest:
        return cls(list(values["rates"]), list(values["losses"]), float(values["suggestion"]))


def lr_range_test(
    module: TransferModule, loader: DataLoader, steps: int = 100, start: float = 1e-6, end: float = 1.0
) -> RangeTest:
    """Raises the rate exponentially from `start` to `end` over `steps` batches and records the loss.

    The suggestion is the rate where the smoothed loss falls fastest (before it starts to climb),
    a tenth of the rate of the lowest loss when the curve has no clear descent. Lower layer groups
    keep the strategy's ratios to the top group. The module's weights are restored afterwards.
    """
    saved = copy.deepcopy(module.state_dict())
    strategy = module.strategy.with_rate(1.0)  # param_groups' rates become ratios to the top group's rate
    strategy.set_trainable(module.backbone, 0)
    groups = strategy.param_groups(module.backbone)
    ratios = [group["lr"] for group in groups]
    optimizer = adamw(groups, weight_decay=module.config.weight_decay)
    module.model.train()
    keep_batchnorm_statistics(module.model, everywhere=module.config.batchnorm == "frozen")
    rates: list[float] = []
    losses: list[float] = []
    smoothed = 0.0
    batches = itertools.cycle(loader)
    with progress_task("learning-rate range test", steps) as advance:
        for step in range(steps):
            rate = start * (end / start) ** (step / max(1, steps - 1))
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = rate * ratio
            images, labels = next(batches)
            loss = module.loss(images, labels, seed=step, augmented=False)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            advance(1)
            smoothed = 0.9 * smoothed + 0.1 * float(loss.detach())
            value = smoothed / (1 - 0.9 ** (step + 1))  # bias-corrected moving average
            if not math.isfinite(value) or (losses and value > 4 * min(losses)):
                break
            rates.append(rate)
            losses.append(value)
    module.load_state_dict(saved)
    module.model.train()
    return RangeTest(rates, losses, suggest_rate(rates, losses))


def suggest_rate(rates: list[float], losses: list[float]) -> float:
    """The rate of steepest descent of the loss in log-rate, before the loss minimum."""
    lowest = int(np.argmin(losses))
    if lowest < 3:
        return rates[lowest] / 10
    slopes = np.gradient(np.asarray(losses[: lowest + 1]), np.log(rates[: lowest + 1]))
    return float(rates[int(np.argmin(slopes))])
