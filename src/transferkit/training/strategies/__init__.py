"""Step 4: fine-tuning strategies, registered by name."""

from transferkit.training.strategies.adapters import BitFit, LoRA
from transferkit.training.strategies.base import FinetuneStrategy, Phase, create_strategy, strategies
from transferkit.training.strategies.layer_groups import (
    FineTune,
    Full,
    Gradual,
    LinearProbeThenFineTune,
    Partial,
)
from transferkit.training.strategies.linear_probe import LinearProbe

__all__ = [
    "BitFit",
    "FineTune",
    "FinetuneStrategy",
    "Full",
    "Gradual",
    "LinearProbe",
    "LinearProbeThenFineTune",
    "LoRA",
    "Partial",
    "Phase",
    "create_strategy",
    "strategies",
]
