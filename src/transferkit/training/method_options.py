"""The options of the built-in methods, declared apart from their implementations, without torch.

Each built-in strategy, semi-supervised method and regularizer takes its `Options` from here, so a
config resolves with every option written out (``transferkit fit --print-config``) in a fraction of a
second, before any method's module (and torch with it) is imported. A method registered elsewhere
keeps its `Options` in its own class; resolving it imports it. `tests/test_catalog.py` checks that
the implementations take exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from transferkit import catalog
from transferkit.config import (
    AT_LEAST_0,
    AT_LEAST_1,
    POSITIVE,
    FitConfig,
    Interval,
    MethodSpec,
    NoOptions,
    build_options,
    option,
    resolved_spec,
    split_method,
)
from transferkit.errors import ConfigError
from transferkit.registry import Registry


@dataclass
class FineTuneOptions:
    frozen_groups: int = option(
        3, "lowest layer groups kept frozen (generic features, no backward pass)", within=AT_LEAST_0
    )


@dataclass
class PartialOptions:
    argument: ClassVar[str] = "groups"  # partial:2
    groups: int | None = option(None, "layer groups below the head that train", within=AT_LEAST_1)

    def __post_init__(self) -> None:
        if self.groups is None:
            raise ConfigError("Strategy 'partial' needs the number of layer groups to train, e.g. partial:2.")


@dataclass
class GradualOptions:
    unfreeze_milestones: list[int] | None = option(None, "epochs at which the next group thaws")


@dataclass
class LoRAOptions:
    rank: int = option(8, "rank of each low-rank update", within=AT_LEAST_1)
    alpha: float = option(16.0, "scale of the updates: alpha / rank", within=POSITIVE)


@dataclass
class FixMatchOptions:
    threshold: float = option(
        0.95, "confidence for a prediction to become a target", within=Interval(0, 1, "neither")
    )
    ratio: int = option(2, "unlabeled images per labeled image in each step", within=AT_LEAST_1)
    weight: float = option(1.0, "weight of the unlabeled loss", within=AT_LEAST_0)


@dataclass
class FlexMatchOptions(FixMatchOptions):
    warmup: bool = option(
        True,
        "threshold warm-up: while most of the pool has no confident prediction yet, every class's "
        "threshold stays low",
    )


@dataclass
class PseudoLabelOptions:
    # linear heads on frozen features are less confident than fine-tuned networks: 0.8, not 0.95
    threshold: float = option(
        0.8, "confidence for a pool image to get a pseudo-label", within=Interval(0, 1, "neither")
    )
    rounds: int = option(3, "self-training rounds on frozen features", within=AT_LEAST_1)
    gate: bool = option(
        True,
        "use the pseudo-labels only if they raise the out-of-fold accuracy of a head on the labeled "
        "images (5 folds, self-training redone without each held-out fold)",
    )


@dataclass
class SelfTrainingOptions:
    # 0.8 over 0.9: better out of fold on digits (91.0 against 88.7 %) and ELPV 10 % (73.8 against 73.3 %),
    # 3 seeds each (benchmarks/results/semi_digits_threshold.md, semi_elpv_threshold08_seeds12.md); with
    # the fold teachers' pseudo-labels, digits' test accuracy 92.3 against 90.9 % (semi_digits_fold_teachers)
    threshold: float = option(
        0.8,
        "the teacher's confidence (mean over test-time views) for a pool image to get a pseudo-label",
        within=Interval(0, 1, "neither"),
    )
    gate: bool = option(
        True,
        "keep the pool only if the student beats its teacher (the recipe on the labeled images alone) "
        "out of fold, or on validation without cross-validation; else the final model is the teacher's",
    )


@dataclass
class L2SPOptions:
    strength: float = option(0.01, "alpha of the pull toward the pretrained weights", within=Interval(0))
    toward: Literal["start", "ancestor"] = option(
        "start",
        "start: the weights fit begins from; ancestor: for a run: start, the pretrained model its line "
        "began with (its generic features)",
    )


# The built-in methods that have options; every other method `catalog.py` declares has none.
BUILT_IN_OPTIONS: dict[Registry[Any], dict[str, type]] = {
    catalog.strategies: {
        "fine-tune": FineTuneOptions,
        "partial": PartialOptions,
        "gradual": GradualOptions,
        "lora": LoRAOptions,
    },
    catalog.semi_methods: {
        "fixmatch": FixMatchOptions,
        "flexmatch": FlexMatchOptions,
        "pseudo-label": PseudoLabelOptions,
        "self-training": SelfTrainingOptions,
    },
    catalog.regularizers: {"l2-sp": L2SPOptions},
}


def resolve_method_options(registry: Registry[Any], name: str) -> tuple[type, str | None]:
    """The options dataclass of the method `name` and the option ``name:VALUE`` sets (or None).

    A built-in method's come from its declaration here, with no import; a method registered at run
    time (or an unknown name, which raises `UnknownNameError`) is looked up in `registry`.
    """
    declared = BUILT_IN_OPTIONS.get(registry, {})
    if name in declared:
        options = declared[name]
        return options, getattr(options, "argument", None)
    if registry.is_declared(name):
        return NoOptions, None
    method = registry.get(name)
    return method.Options, method.argument


def resolve_method_spec(registry: Registry[Any], spec: MethodSpec, key: str) -> MethodSpec:
    """The method `spec` names with every option, checked, as config.yaml records it."""
    name = split_method(spec, key)[0]
    options, argument = resolve_method_options(registry, name)
    return resolved_spec(name, build_options(options, spec, key, argument))


def with_resolved_options(config: FitConfig) -> FitConfig:
    """The config with every method written out with all its options, as
    `transferkit.training.methods.with_resolved_methods` writes it, without creating the methods."""
    train = config.train
    methods = {
        "train.strategy": (catalog.strategies, train.strategy),
        "train.semi": (catalog.semi_methods, train.semi),
        "train.regularizer": (catalog.regularizers, train.regularizer),
    }
    return config.with_overrides(
        {key: resolve_method_spec(registry, spec, key) for key, (registry, spec) in methods.items()}
    )
