"""Step 4: fine-tuning strategies, registered by name."""

from transferkit.strategies.adapters import BitFit, LoRA
from transferkit.strategies.base import FinetuneStrategy, Phase, create_strategy, strategies
from transferkit.strategies.layer_groups import FineTune, Full, Gradual, LinearProbeThenFineTune, Partial
from transferkit.strategies.linear_probe import LinearProbe

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
