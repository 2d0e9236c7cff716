"""The three kinds of method a run combines, created together from the config: each is checked
before any work, and config.yaml records each with every option."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.config import FitConfig
from transferkit.training.regularizers import Regularizer, create_regularizer
from transferkit.training.semi import SemiMethod, create_semi_method
from transferkit.training.strategies import FinetuneStrategy, create_strategy


@dataclass(frozen=True)
class Methods:
    """What trains (the strategy), what the pool adds (semi) and what the loss adds (regularizer)."""

    strategy: FinetuneStrategy
    semi: SemiMethod
    regularizer: Regularizer


def create_methods(config: FitConfig) -> Methods:
    """The methods ``train.strategy``, ``train.semi`` and ``train.regularizer`` name, options checked."""
    train = config.train
    return Methods(create_strategy(train), create_semi_method(train), create_regularizer(train))


def with_resolved_methods(config: FitConfig, methods: Methods | None = None) -> FitConfig:
    """The config with every method written out with all its options, as config.yaml records it."""
    methods = methods or create_methods(config)
    return config.with_overrides(
        {
            "train.strategy": methods.strategy.spec(),
            "train.semi": methods.semi.spec(),
            "train.regularizer": methods.regularizer.spec(),
        }
    )
