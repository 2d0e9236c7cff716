"""Step 4: fine-tuning strategies, registered by name."""

from transferkit.strategies.base import FinetuneStrategy, Phase, create_strategy, strategies
from transferkit.strategies.fine_tune import FineTune
from transferkit.strategies.linear_probe import LinearProbe

__all__ = [
    "FineTune",
    "FinetuneStrategy",
    "LinearProbe",
    "Phase",
    "create_strategy",
    "strategies",
]
