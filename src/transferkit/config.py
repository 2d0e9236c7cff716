"""Typed run configuration: dataclasses with every default written out, YAML in and out, overrides.

A config is validated before any work starts: unknown keys are named with the closest valid key,
and values of the wrong type say which type was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

from transferkit.errors import ConfigError

_T = TypeVar("_T")


@dataclass
class ModelConfig:
    """Step 1: which pretrained model to start from."""

    name: str = "efficientnet_lite0"
    pretrained: bool = True  # False: random init, for tests and controls
    arch: str | None = None  # the timm architecture of a `file:` weights file
    weights: str | None = None  # a local weights file for a timm: or torchvision: architecture


@dataclass
class DataConfig:
    """Step 2: which dataset, and how to split it when the source defines no split."""

    name: str = "elpv"
    val_fraction: float = 0.1  # carved from train, stratified
    test_fraction: float = 0.25  # only for sources without a test split of their own
    split_seed: int = 0  # fixed apart from `seed`, so runs with different seeds share one test set
    subset: int | None = None  # a stratified random subset of this many images, for quick trials
    channels: int | None = None  # None: as the source says (3, or 1 for grayscale sets); 4 keeps a 4th band
    image_column: str | None = None  # hf: datasets: the image column (None: the one Image feature)
    label_column: str | None = None  # hf: datasets: the label column (None: the one ClassLabel feature)
    labels_per_class: int | None = None  # keep K labeled train images per class; the rest become unlabeled
    label_fraction: float | None = None  # or keep this fraction of train labeled, stratified
    unlabeled: str | None = None  # a folder or manifest of images without labels, added to the unlabeled pool
    bad_images: str = "skip"  # skip: leave unreadable files out and list them in the report; error: stop
    cache: bool = True  # keep decoded, resized images on disk between runs (keyed by content + preprocessing)

    def __post_init__(self) -> None:
        _require(0 <= self.val_fraction < 1, "data.val_fraction", "must lie in [0, 1)", self.val_fraction)
        _require(0 < self.test_fraction < 1, "data.test_fraction", "must lie in (0, 1)", self.test_fraction)
        _require(0 <= self.split_seed < 2**32, "data.split_seed", "must lie in [0, 2**32)", self.split_seed)
        _require(
            self.subset is None or self.subset > 0, "data.subset", "must be positive or null", self.subset
        )
        _require(self.channels in (None, 1, 3, 4), "data.channels", "must be 1, 3, 4 or null", self.channels)
        _require(
            self.labels_per_class is None or self.labels_per_class > 0,
            "data.labels_per_class",
            "must be positive or null",
            self.labels_per_class,
        )
        _require(
            self.label_fraction is None or 0 < self.label_fraction <= 1,
            "data.label_fraction",
            "must lie in (0, 1] or be null",
            self.label_fraction,
        )
        _require(
            self.labels_per_class is None or self.label_fraction is None,
            "data.labels_per_class",
            "and data.label_fraction exclude each other; set one",
            self.labels_per_class,
        )
        _require(
            self.bad_images in ("skip", "error"), "data.bad_images", "must be skip or error", self.bad_images
        )


@dataclass
class PreprocessConfig:
    """Step 3: input size and augmentation; normalization always comes from the model."""

    image_size: int | None = None  # None: the size the pretrained weights expect
    augment: str = "auto"  # auto: what the dataset recommends (d4 for ELPV cells), else "light"
    tta: bool = True  # average predictions over the deterministic transforms of `augment`

    def __post_init__(self) -> None:
        size = self.image_size
        _require(size is None or size >= 16, "preprocess.image_size", "must be at least 16 px or null", size)


@dataclass
class TrainConfig:
    """Step 4: the fine-tuning strategy, its optimisation, and how the run survives interruptions."""

    strategy: str = "fine-tune"  # a registered name; partial:K trains the top K layer groups
    epochs: int = 7
    batch_size: int = 16
    lr: float | str = 3e-4  # peak rate of the top layer group, or "auto": a learning-rate range test
    lr_decay: float | None = None  # rate factor per layer group below the top; None: the strategy's own
    frozen_groups: int = 3  # fine-tune: lowest layer groups kept frozen (generic features, no backward)
    unfreeze_milestones: list[int] | None = None  # gradual: epochs at which the next group thaws
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    # frozen: every BatchNorm layer keeps its pretrained statistics (the features the head was fitted on);
    # adapt: the trained ones learn the new data's statistics (always, when model.pretrained is false)
    batchnorm: str = "frozen"
    mixup: float = 0.0  # alpha of Beta(alpha, alpha) for mixing image pairs; 0 turns it off
    cutmix: float = 0.0  # alpha for pasting a box of one image into another; 0 turns it off
    ema: bool = False  # evaluate an exponential moving average of the weights
    ema_decay: float = 0.998
    regularizer: str = "none"  # l2-sp: pull the backbone toward its pretrained weights
    regularizer_strength: float = 0.01
    lora_rank: int = 8
    lora_alpha: float = 16.0
    balance: str = (
        "none"  # weights: class-weighted loss; sampler: class-balanced batches; auto: weights if skewed
    )
    semi: str = "none"  # fixmatch or pseudo-label: also learn from the unlabeled pool
    semi_threshold: float | None = (
        None  # confidence for a pseudo-label; None: fixmatch 0.95, pseudo-label 0.8
    )
    semi_ratio: int = 2  # fixmatch: unlabeled images per labeled image in each step
    semi_weight: float = 1.0  # fixmatch: weight of the unlabeled loss
    semi_rounds: int = 3  # pseudo-label: self-training rounds on frozen features
    early_stopping: int | None = None  # epochs without a better validation accuracy before stopping
    time_budget: float | None = None  # minutes of training; then stop cleanly and keep the best checkpoint
    accumulate: int = 1  # batches whose gradients add up before each optimizer step
    precision: str = "32-true"
    deterministic: bool = False  # deterministic kernels: a resumed run ends with the same weights
    checkpoint_every: int = 50  # optimizer steps between resume checkpoints (also at every epoch end)
    devices: int = 1
    num_nodes: int = 1
    distributed: str = "ddp"  # how several devices share the work: ddp or fsdp
    num_workers: int = 0  # the decoded cache lives in memory: worker processes would copy it

    def __post_init__(self) -> None:
        _require(self.epochs >= 0, "train.epochs", "must be 0 or more", self.epochs)
        _require(self.batch_size >= 1, "train.batch_size", "must be at least 1", self.batch_size)
        _require(
            self.lr == "auto" or (not isinstance(self.lr, str) and 0 < self.lr < math.inf),
            "train.lr",
            "must be positive or auto",
            self.lr,
        )
        _require(
            self.lr_decay is None or 0 < self.lr_decay <= 1,
            "train.lr_decay",
            "must lie in (0, 1]",
            self.lr_decay,
        )
        _require(self.frozen_groups >= 0, "train.frozen_groups", "must be 0 or more", self.frozen_groups)
        _require(self.weight_decay >= 0, "train.weight_decay", "must be 0 or more", self.weight_decay)
        warmup = self.warmup_fraction
        _require(0 <= warmup <= 1, "train.warmup_fraction", "must lie in [0, 1]", warmup)
        smoothing = self.label_smoothing
        _require(0 <= smoothing < 1, "train.label_smoothing", "must lie in [0, 1)", smoothing)
        _require(self.num_workers >= 0, "train.num_workers", "must be 0 or more", self.num_workers)
        _require(
            self.optimizer in ("adamw", "sgd"), "train.optimizer", "must be adamw or sgd", self.optimizer
        )
        _require(self.mixup >= 0, "train.mixup", "must be 0 (off) or a positive alpha", self.mixup)
        _require(self.cutmix >= 0, "train.cutmix", "must be 0 (off) or a positive alpha", self.cutmix)
        _require(0 < self.ema_decay < 1, "train.ema_decay", "must lie in (0, 1)", self.ema_decay)
        _require(
            self.batchnorm in ("adapt", "frozen"),
            "train.batchnorm",
            "must be adapt or frozen",
            self.batchnorm,
        )
        _require(
            self.regularizer in ("none", "l2-sp"),
            "train.regularizer",
            "must be none or l2-sp",
            self.regularizer,
        )
        _require(self.lora_rank >= 1, "train.lora_rank", "must be at least 1", self.lora_rank)
        _require(
            self.balance in ("none", "auto", "weights", "sampler"),
            "train.balance",
            "must be none, auto, weights or sampler",
            self.balance,
        )
        _require(
            self.semi in ("none", "fixmatch", "pseudo-label"),
            "train.semi",
            "must be none, fixmatch or pseudo-label",
            self.semi,
        )
        threshold = self.semi_threshold
        _require(
            threshold is None or 0 < threshold < 1,
            "train.semi_threshold",
            "must lie in (0, 1) or be null",
            threshold,
        )
        _require(self.semi_ratio >= 1, "train.semi_ratio", "must be at least 1", self.semi_ratio)
        _require(self.semi_weight >= 0, "train.semi_weight", "must be 0 or more", self.semi_weight)
        _require(self.semi_rounds >= 1, "train.semi_rounds", "must be at least 1", self.semi_rounds)
        _require(
            self.early_stopping is None or self.early_stopping >= 1,
            "train.early_stopping",
            "must be at least 1 epoch or null",
            self.early_stopping,
        )
        _require(
            self.time_budget is None or self.time_budget > 0,
            "train.time_budget",
            "must be positive minutes or null",
            self.time_budget,
        )
        _require(self.accumulate >= 1, "train.accumulate", "must be at least 1", self.accumulate)
        _require(
            self.precision in ("32-true", "32", "bf16-mixed", "16-mixed"),
            "train.precision",
            "must be 32-true, bf16-mixed or 16-mixed",
            self.precision,
        )
        _require(
            self.checkpoint_every >= 1, "train.checkpoint_every", "must be at least 1", self.checkpoint_every
        )
        _require(self.devices >= 1, "train.devices", "must be at least 1", self.devices)
        _require(self.num_nodes >= 1, "train.num_nodes", "must be at least 1", self.num_nodes)
        _require(
            self.distributed in ("ddp", "fsdp"), "train.distributed", "must be ddp or fsdp", self.distributed
        )


@dataclass
class FitConfig:
    """Everything `transferkit fit` needs; written to `config.yaml` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = "runs"

    def __post_init__(self) -> None:
        # numpy and Lightning's seed_everything take seeds in [0, 2**32) only, and would fail mid-fit.
        _require(0 <= self.seed < 2**32, "seed", "must lie in [0, 2**32)", self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        return _build(cls, values, prefix="")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        # ValueError: not UTF-8, or a scalar YAML cannot build (a date like 2020-13-45, `!!float abc`);
        # OverflowError: an escape like "\\UFFFFFFFF"; RecursionError: absurdly nested brackets.
        except (OSError, ValueError, OverflowError, RecursionError, yaml.YAMLError) as err:
            raise ConfigError(f"Cannot read config file {path}: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"Config file {path} must hold a mapping of keys, not {type(values).__name__}.")
        return cls.from_dict(values)

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """Returns a copy with dotted keys replaced, e.g. ``{"train.lr": 3e-4}``."""
        values = self.to_dict()
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = values
            for key in parents:
                child = node.get(key)
                if not isinstance(child, dict):
                    raise ConfigError(_unknown_key_message(dotted, key, node))
                node = child
            if leaf not in node:
                raise ConfigError(_unknown_key_message(dotted, leaf, node))
            node[leaf] = value
        return type(self).from_dict(values)


def _require(condition: bool, key: str, rule: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"Config key {key!r} {rule}, got {value!r}.")


def parse_override(text: str) -> tuple[str, Any]:
    """Parses ``key.sub=value``; the value is read as YAML, so numbers and booleans keep their type."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"Override {text!r} must look like key=value, e.g. train.lr=3e-4.")
    try:
        value = yaml.safe_load(raw)
    except (ValueError, OverflowError, RecursionError, yaml.YAMLError) as err:
        raise ConfigError(
            f"Override {text!r}: the value {raw!r} is not valid YAML ({' '.join(str(err).split())}). "
            "Quote text, e.g. "
            f"{key.strip()}='{raw}'."
        ) from err
    return key.strip(), value


def _unknown_key_message(dotted: str, key: str, valid: dict[Any, Any]) -> str:
    names = [str(name) for name in valid]  # an override may have put a mapping with other keys there
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown config key {dotted!r}.{hint} Valid keys here: {', '.join(names)}."


def _build(cls: type[_T], values: Any, prefix: str) -> _T:
    if not isinstance(values, dict):
        raise ConfigError(f"Config section {prefix or '<root>'!r} must be a mapping, got {values!r}.")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if not isinstance(key, str):  # YAML makes `1: x` an int key, `null: x` a None key
            raise ConfigError(_unknown_key_message(f"{prefix}{key}", str(key), dict.fromkeys(known)))
        if key not in known:
            raise ConfigError(_unknown_key_message(prefix + key, key, dict.fromkeys(known)))
    kwargs = {key: _coerce(hints[key], value, prefix + key) for key, value in values.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=key + ".")  # type: ignore[arg-type]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    if str in allowed and isinstance(value, Path):
        return str(value)
    for kind in allowed:
        if typing.get_origin(kind) is list and isinstance(value, list):
            return [_coerce(typing.get_args(kind)[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
        if kind is float and isinstance(value, int | float | str) and not isinstance(value, bool):
            # YAML reads 3e-4 (no dot) as a string; OverflowError: an int beyond float's range.
            with contextlib.suppress(ValueError, OverflowError):
                return float(value)
        if _is_plain_instance(value, kind):
            return value
    names = " or ".join("null" if k is type(None) else getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"Config key {key!r} must be {names}, got {value!r} ({type(value).__name__}).")


def _is_plain_instance(value: Any, kind: Any) -> bool:
    # isinstance cannot test list[int] (handled item by item above); a bool is no int in a config.
    return (
        typing.get_origin(kind) is None
        and kind is not type(None)
        and isinstance(value, kind)
        and not (kind is int and isinstance(value, bool))
    )


# Keyword arguments of `transferkit.fit` and flags of `transferkit fit`, as dotted config keys.
SHORTCUTS = {
    "model": "model.name",
    "pretrained": "model.pretrained",
    "arch": "model.arch",
    "weights": "model.weights",
    "data": "data.name",
    "channels": "data.channels",
    "image_column": "data.image_column",
    "label_column": "data.label_column",
    "labels_per_class": "data.labels_per_class",
    "label_fraction": "data.label_fraction",
    "unlabeled": "data.unlabeled",
    "bad_images": "data.bad_images",
    "image_size": "preprocess.image_size",
    "augment": "preprocess.augment",
    "strategy": "train.strategy",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "layer_decay": "train.lr_decay",
    "regularizer": "train.regularizer",
    "mixup": "train.mixup",
    "cutmix": "train.cutmix",
    "label_smoothing": "train.label_smoothing",
    "batchnorm": "train.batchnorm",
    "ema": "train.ema",
    "precision": "train.precision",
    "accumulate": "train.accumulate",
    "optimizer": "train.optimizer",
    "early_stopping": "train.early_stopping",
    "semi": "train.semi",
    "balance": "train.balance",
    "time_budget": "train.time_budget",
    "deterministic": "train.deterministic",
    "devices": "train.devices",
    "num_nodes": "train.num_nodes",
    "distributed": "train.distributed",
    "seed": "seed",
    "out": "out",
}


def resolve_config(config: FitConfig | str | Path | None = None, **options: Any) -> FitConfig:
    """A FitConfig from an object or a YAML file, then shortcut (``epochs=3``) or dotted options."""
    if config is None:
        config = FitConfig()
    elif not isinstance(config, FitConfig):
        config = FitConfig.from_yaml(config)
    sections = {f.name for f in dataclasses.fields(FitConfig)}
    for key in options:
        if "." not in key and key not in SHORTCUTS and key not in sections:
            raise ConfigError(_unknown_key_message(key, key, dict.fromkeys([*SHORTCUTS, *sections])))
    return config.with_overrides({SHORTCUTS.get(key, key): value for key, value in options.items()})
