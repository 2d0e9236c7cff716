"""Typed run configuration: dataclasses with every default written out, YAML in and out, overrides.

Each option is declared once, with `option(default, help, within=...)`: its type (a `Literal` for a
set of names), its bounds and its help. Validation, the command-line flags (`cli.flags`) and the
printed config all read that one declaration. A method (strategy, semi-supervised method,
regularizer) is named by a `MethodSpec` and owns its options: ``train.strategy: {name: lora, rank: 8}``.

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
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args

import yaml

from transferkit.errors import ConfigError
from transferkit.registry import Registry

_T = TypeVar("_T")
_M = TypeVar("_M")


MethodSpec = str | dict[str, Any]
"""A method by name (``"lora"``, ``"partial:2"``: its one argument after the colon) or as a mapping of
its name and options (``{"name": "lora", "rank": 8}``)."""


@dataclass(frozen=True)
class Interval:
    """The numbers an option allows, declared with it and checked in one place (as scikit-learn's
    ``Interval``); ``closed`` says which ends belong to it."""

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # a huge int is finite, not a float
            return False
        low_ok = (
            self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        )
        high_ok = (
            self.high is None
            or value < self.high
            or (value == self.high and self.closed in ("both", "right"))
        )
        return low_ok and high_ok

    def __str__(self) -> str:
        if self.high is None:
            if self.closed in ("both", "left"):
                return "must be 0 or more" if self.low == 0 else f"must be at least {_number(self.low)}"
            return "must be positive" if self.low == 0 else f"must be more than {_number(self.low)}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"must lie in {left}{_number(self.low)}, {_number(self.high)}{right}"


def _number(value: float | None) -> str:
    # 2**32 reads better than 4.29497e+09
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}"


AT_LEAST_0, AT_LEAST_1, POSITIVE = Interval(0), Interval(1), Interval(0, closed="neither")
# Below this many validation images per class (on average), choices made on validation are noise:
# `cv.folds: auto` cross-validates instead.
SMALL_VALIDATION_PER_CLASS = 10
FRACTION = Interval(0, 1, "left")  # [0, 1)
RECALL, RECALL_TEXT = Interval(0, 1, "right"), "(0, 1]"


def option(
    default: Any = None, help: str = "", *, within: Interval | None = None, flag: bool | str = False
) -> Any:
    """A config field with its help and bounds; `flag` also makes it a shortcut (``fit(epochs=3)``) and
    a flag of ``transferkit fit`` (``--epochs 3``), under its own name or the name `flag` gives.
    A list default is copied per instance."""
    metadata = {"help": help, "within": within, "flag": flag}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class Section:
    """A config section: its options are checked against their declared bounds when it is built."""

    key: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_options(self, f"{self.key}." if self.key else "")


@dataclass
class ModelConfig(Section):
    """Step 1: which pretrained model to start from."""

    key: ClassVar[str] = "model"
    name: str = option(
        "efficientnet_lite0",
        "efficientnet_lite0/1/2 (packaged), timm:, hf:, torchvision:, file:, run: or a folder "
        "(see: transferkit models); several as a,b,c, or auto (the packaged ones): the best-scoring starts",
        flag=True,
    )
    pretrained: bool = option(True, "False: random init, for tests and controls", flag=True)
    arch: str | None = option(None, "the timm architecture of a file: weights file, e.g. resnet18", flag=True)
    weights: str | None = option(None, "a local weights file for a timm: or torchvision: model", flag=True)


@dataclass
class DataConfig(Section):
    """Step 2: which dataset, and how to split it when the source defines no split."""

    key: ClassVar[str] = "data"
    name: str = option(
        "elpv",
        "elpv, elpv:binary, digits, a folder of class subfolders, a .csv/.jsonl manifest, or hf:<name> / "
        "a save_to_disk folder",
        flag=True,
    )
    val_fraction: float = option(0.1, "share of train carved out for validation, stratified", within=FRACTION)
    test_fraction: float = option(
        0.25, "share held out for test, for sources without a test split", within=Interval(0, 1, "neither")
    )
    split_seed: int = option(
        0,
        "fixed apart from seed: runs with other seeds share one test set",
        within=Interval(0, 2**32, "left"),
    )
    subset: int | None = option(None, "a stratified random subset of this many images", within=POSITIVE)
    channels: Literal[1, 3, 4] | None = option(
        None, "null: as the source says (3, or 1 for grayscale sets); 4 keeps a 4th band", flag=True
    )
    image_column: str | None = option(None, "hf: datasets and manifests: the column of images", flag=True)
    label_column: str | None = option(None, "hf: datasets and manifests: the column of labels", flag=True)
    labels_per_class: int | None = option(
        None,
        "keep K labeled images per class, train and validation together; the rest become unlabeled",
        within=POSITIVE,
        flag=True,
    )
    label_fraction: float | None = option(
        None,
        "keep this fraction of train and validation labeled, stratified",
        within=Interval(0, 1, "right"),
        flag=True,
    )
    unlabeled: str | None = option(None, "folder or manifest of unlabeled images for the pool", flag=True)
    aux_label: str | None = option(
        None,
        "another label of the same images (a manifest's further column; elpv: module_type) that an "
        "auxiliary head learns beside the task, to shape the shared features",
        flag=True,
    )
    bad_images: Literal["skip", "error"] = option(
        "skip", "unreadable files: leave out and list in the report (skip), or stop (error)", flag=True
    )
    cache: bool = option(True, "keep decoded, resized images on disk between runs")
    keep_together: bool = option(
        True,
        "the splits and folds transferkit makes keep a manifest's groups and copies of one file (same "
        "bytes) on one side",
    )
    class_order: list[str] | None = option(
        None,
        "every class name once, in the classes' order (ordered classes: lowest first; their metrics then "
        "include MAE and QWK); null: as the source gives them (folder names sorted)",
        flag=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(
            self.labels_per_class is None or self.label_fraction is None,
            "data.labels_per_class",
            "and data.label_fraction exclude each other; set one",
            self.labels_per_class,
        )


# preprocess.crop: a crop mode of `transforms.preprocessing`, the weights' own, or auto (chosen per dataset)
CropSetting = Literal["auto", "weights", "center", "squash", "border"]
CROP_SETTINGS: tuple[str, ...] = get_args(CropSetting)


@dataclass
class PreprocessConfig(Section):
    """Step 3: input size and augmentation; normalization always comes from the model."""

    key: ClassVar[str] = "preprocess"
    image_size: int | None = option(
        None, "input size in px (null: what the weights expect)", within=Interval(16), flag=True
    )
    augment: str = option("auto", "augmentation preset; auto: what the dataset recommends", flag=True)
    crop: CropSetting = option(
        "auto",
        "how an image becomes the square input: weights: as the weights were evaluated (mostly a centre "
        "crop); center; squash (aspect ratio not kept); border (padded); auto: the weights' own, but "
        "squash images so elongated that a centre crop would keep less than two thirds of them, whole",
        flag=True,
    )
    crop_pct: float | None = option(
        None,
        "the share of the resized image's side the crop keeps (null: the weights' own, or 1 where crop "
        "auto squashes; 1: the whole image)",
        within=Interval(0, 1, "right"),
        flag=True,
    )
    tta: bool = option(True, "average predictions over the deterministic transforms of augment", flag=True)


@dataclass
class TrainConfig(Section):
    """Step 4: the fine-tuning strategy and its optimisation; each method owns its own options."""

    key: ClassVar[str] = "train"
    strategy: MethodSpec = option(
        "fine-tune", "fine-tuning strategy; its options: --set train.strategy.OPTION=VALUE", flag=True
    )
    epochs: int = option(7, "fine-tuning epochs after the head is fitted", within=AT_LEAST_0, flag=True)
    batch_size: int = option(16, "images per step", within=AT_LEAST_1, flag=True)
    lr: float | Literal["auto"] = option(
        3e-4,
        "peak rate of the top layer group, or auto: a learning-rate range test",
        within=POSITIVE,
        flag=True,
    )
    lr_decay: float | None = option(
        None,
        "rate factor per layer group below the top (null: the strategy's own)",
        within=Interval(0, 1, "right"),
        flag="layer_decay",
    )
    optimizer: Literal["adamw", "sgd"] = option("adamw", "AdamW, or SGD with Nesterov momentum", flag=True)
    weight_decay: float = option(0.01, "decoupled weight decay", within=AT_LEAST_0)
    warmup_fraction: float = option(0.1, "share of the steps with a linear warm-up", within=Interval(0, 1))
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", within=FRACTION, flag=True)
    batchnorm: Literal["frozen", "adapt"] = option(
        "frozen",
        "BatchNorm statistics: keep the pretrained ones (the features the head was fitted on), or adapt "
        "them to the new data (always, when model.pretrained is false)",
        flag=True,
    )
    mixup: float = option(
        0.0, "alpha of Beta(alpha, alpha) for mixing image pairs; 0: off", within=AT_LEAST_0, flag=True
    )
    cutmix: float = option(
        0.0, "alpha for pasting a box of one image into another; 0: off", within=AT_LEAST_0, flag=True
    )
    ema: bool = option(False, "evaluate an exponential moving average of the weights", flag=True)
    wise_ft: bool = option(
        True,
        "keep the weights that predict held-out images best among the fitted head, the fine-tuned network "
        "and interpolations between them (WiSE-FT), chosen on validation or out-of-fold predictions",
        flag=True,
    )
    ema_decay: float = option(0.998, "decay of the weight average", within=Interval(0, 1, "neither"))
    regularizer: MethodSpec = option("none", "a regularizer of fine-tuning", flag=True)
    balance: Literal["none", "auto", "weights", "sampler"] = option(
        "none", "imbalanced classes: class-weighted loss, class-balanced batches, or auto", flag=True
    )
    semi: MethodSpec = option("none", "also learn from the unlabeled pool", flag=True)
    aux_weight: float = option(
        0.3, "weight of the auxiliary head's loss (with data.aux_label)", within=POSITIVE, flag=True
    )
    early_stopping: int | None = option(
        None, "epochs without a better validation accuracy before stopping", within=AT_LEAST_1, flag=True
    )
    time_budget: float | None = option(
        None,
        "minutes of training; then stop cleanly and keep the best checkpoint",
        within=POSITIVE,
        flag=True,
    )
    accumulate: int = option(
        1, "batches whose gradients add up before each optimizer step", within=AT_LEAST_1, flag=True
    )
    task: Literal["classification", "ordinal"] = option(
        "classification",
        "ordinal: the classes are ordered (as data.class_order or the source gives them) and the head is a "
        "cumulative-link model, whose predictions keep that order",
        flag=True,
    )


@dataclass
class CrossValidationConfig(Section):
    """K-fold cross-validation over the train images (validation folded in): out-of-fold metrics and
    calibration, then the final model: refit on every train image, or the ensemble of the fold models."""

    key: ClassVar[str] = "cv"
    folds: int | Literal["auto"] | None = option(
        "auto",
        "folds of cross-validation over train; auto: 5 when the validation split would hold fewer than "
        f"{SMALL_VALIDATION_PER_CLASS} images per class, or too few of a --recall-target's class for its "
        "threshold, else none; null: never",
        within=Interval(2),
        flag="folds",
    )
    final: Literal["refit", "ensemble"] = option(
        "refit",
        "the final model: refit on every train image, or the ensemble of the fold models (the mean of "
        "their probabilities)",
        flag="folds_final",
    )


@dataclass
class DecisionConfig(Section):
    """How the exported model turns probabilities into a predicted class."""

    key: ClassVar[str] = "decision"
    recall_target: str | None = option(
        None,
        "CLASS:RECALL, e.g. defective:0.95: predict CLASS whenever its probability reaches the largest "
        "threshold that finds RECALL of it on validation (or out-of-fold) images; null: the most probable "
        "class",
        flag=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recall()  # a malformed target fails when the config is built, before any work

    def recall(self) -> tuple[str, float] | None:
        """The recall target as (class name, recall in (0, 1]), or None."""
        if self.recall_target is None:
            return None
        name, colon, text = self.recall_target.rpartition(":")
        target = _scalar(text) if colon else None
        number = isinstance(target, int | float) and not isinstance(target, bool)
        _require(
            bool(name) and number and typing.cast(float, target) in RECALL,
            "decision.recall_target",
            f"(--recall-target) must be CLASS:RECALL with RECALL in {RECALL_TEXT}, e.g. defective:0.95",
            self.recall_target,
        )
        return name, float(target)  # type: ignore[arg-type]  # a number: checked above


@dataclass
class RuntimeConfig(Section):
    """Where and how training runs: devices, numeric precision, workers, reproducibility, checkpoints."""

    key: ClassVar[str] = "runtime"
    devices: int = option(
        1, "devices per machine (several: distributed training)", within=AT_LEAST_1, flag=True
    )
    num_nodes: int = option(1, "machines, under torchrun or SLURM", within=AT_LEAST_1, flag=True)
    distributed: Literal["ddp", "fsdp"] = option("ddp", "how several devices share the work", flag=True)
    precision: Literal["32-true", "32", "bf16-mixed", "16-mixed"] = option(
        "32-true", "numeric precision", flag=True
    )
    deterministic: bool = option(
        False, "deterministic kernels: a resumed run ends with the same weights", flag=True
    )
    checkpoint_every: int = option(50, "optimizer steps between resume checkpoints", within=AT_LEAST_1)
    num_workers: int = option(0, "data loader workers (the decoded images live in memory)", within=AT_LEAST_0)
    inference: Literal["auto", "onnx", "torch"] = option(
        "auto",
        "what runs validation and test predictions: auto takes onnxruntime on a CPU when it matches PyTorch "
        "on the run's first images, else PyTorch",
        flag=True,
    )


# Options that change what a run computes, added after runs were first written: the value the older
# runs behaved as, so that `evaluate` and `--resume` rebuild them as they were made.
OPTIONS_ADDED_SINCE_FIRST_RUNS: dict[str, Any] = {"data.keep_together": False, "preprocess.crop": "weights"}


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    # ValueError: not UTF-8, or a scalar YAML cannot build (a date like 2020-13-45, `!!float abc`);
    # OverflowError: an escape like "\\UFFFFFFFF"; RecursionError: absurdly nested brackets.
    except (OSError, ValueError, OverflowError, RecursionError, yaml.YAMLError) as err:
        raise ConfigError(f"Cannot read config file {path}: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys, not {type(values).__name__}.")
    return values


@dataclass
class FitConfig(Section):
    """Everything `transferkit fit` needs; written to `config.yaml` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # numpy and Lightning's seed_everything take seeds in [0, 2**32) only, and would fail mid-fit.
    seed: int = option(
        0, "seed of every random draw of training", within=Interval(0, 2**32, "left"), flag=True
    )
    out: str = option("runs", "folder for run directories", flag=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        return _build(cls, values, prefix="")

    @classmethod
    def from_yaml(cls, path: str | Path, base: FitConfig | None = None) -> Self:
        """The config a YAML file gives; keys it leaves out keep `base`'s values (default: the defaults)."""
        values = _read_yaml(path)
        return cls.from_dict(_merged(base.to_dict(), values) if base is not None else values)

    @classmethod
    def of_run(cls, path: str | Path) -> Self:
        """A run's saved config.yaml; an option added after the run was written takes the value that
        rebuilds the run as it was made (its splits, say), not today's default."""
        values = _read_yaml(path)
        for dotted, value in OPTIONS_ADDED_SINCE_FIRST_RUNS.items():
            section, leaf = dotted.split(".")
            if isinstance(values.get(section), dict) and leaf not in values[section]:
                values[section][leaf] = value
        return cls.from_dict(values)

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """Returns a copy with dotted keys replaced, e.g. ``{"train.lr": 3e-4}``."""
        values = self.to_dict()
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = values
            for key in parents:
                child = node.get(key)
                if isinstance(child, str) and parents[-1] == key:  # a method by name: add its options
                    child = node[key] = {"name": child}
                if not isinstance(child, dict):
                    raise ConfigError(_unknown_key_message(dotted, key, node))
                node = child
            if leaf not in node and "name" not in node:  # a method checks its own options when built
                raise ConfigError(_unknown_key_message(dotted, leaf, node))
            node[leaf] = value
        return type(self).from_dict(values)


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section; a value that is not a mapping on both sides is replaced."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def check_options(options: Any, prefix: str) -> None:
    """Every numeric option within its declared `Interval`; ``prefix`` names the section in errors."""
    hints = typing.get_type_hints(type(options))
    for spec in dataclasses.fields(options):
        within = spec.metadata.get("within")
        value = getattr(options, spec.name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if within is not None and number and value not in within:
            others = [name for name in _names(hints[spec.name]) if name not in ("int", "float")]
            alternatives = f" or {_listing(others)}" if others else ""
            raise ConfigError(f"Config key {prefix + spec.name!r} {within}{alternatives}, got {value!r}.")


def method_name(spec: MethodSpec) -> str:
    """The name of the method a spec names: ``"partial"`` for ``"partial:2"`` or ``{"name": "partial"}``."""
    return split_method(spec, "")[0]


def split_method(spec: MethodSpec, key: str) -> tuple[str, dict[str, Any]]:
    """A method spec as (name, options given); ``"partial:2"`` gives ``("partial", {"": 2})``, the one
    argument for the method's `argument` option."""
    if isinstance(spec, str):
        name, colon, argument = spec.partition(":")
        return name, ({"": _scalar(argument)} if colon else {})
    options = dict(spec)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(
            f"Config key {key!r} must name its method, e.g. {{name: lora, rank: 8}}; got {spec!r}."
        )
    return name, options


def _scalar(text: str) -> Any:
    """``2`` -> 2, ``0.5`` -> 0.5; what YAML cannot read stays text (the option's type check names it)."""
    try:
        return yaml.safe_load(text)
    except (ValueError, OverflowError, RecursionError, yaml.YAMLError):
        return text


def build_options(cls: type[_T], spec: MethodSpec, key: str, argument: str | None = None) -> _T:
    """A method's options dataclass from its spec: defaults, then what the spec gives, each checked
    (type and bounds) as any config key, named ``key.option`` in errors."""
    name, values = split_method(spec, key)
    if "" in values:
        if argument is None:
            raise ConfigError(f"Config key {key!r}: {name} takes no argument, got {spec!r}.")
        values[argument] = values.pop("")
    built = _build(cls, values, prefix=f"{key}.")
    check_options(built, f"{key}.")
    return built


@dataclass
class NoOptions:
    """The options of a method that has none."""


def create_method(registry: Registry[type[_M]], spec: MethodSpec, key: str, *args: Any) -> _M:
    """The registered method that `spec` names, built with `args` and then its options, checked and
    named ``key.option`` in errors. A method class declares `Options` (a dataclass of `option`s) and
    `argument` (the option ``name:VALUE`` sets, or None)."""
    cls: Any = registry.get(split_method(spec, key)[0])
    return cls(*args, build_options(cls.Options, spec, key, cls.argument))


def resolved_spec(name: str, options: Any) -> MethodSpec:
    """What config.yaml records for a method: its name alone, or its name with every option."""
    values = dataclasses.asdict(options)
    return {"name": name, **values} if values else name


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
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    allowed = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in allowed:
        return None
    if str in allowed and isinstance(value, Path):
        return str(value)
    for kind in allowed:
        coerced = _coerce_to(kind, value, key)
        if coerced is not _NO_MATCH:
            return coerced
    names = _listing([name for kind in allowed for name in _names(kind)])
    raise ConfigError(f"Config key {key!r} must be {names}, got {value!r} ({type(value).__name__}).")


_NO_MATCH = object()


def _coerce_to(kind: Any, value: Any, key: str) -> Any:
    """`value` as `kind`, or _NO_MATCH; a bool is neither a number nor a name in a config."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list and isinstance(value, list):
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if kind is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        # YAML reads 3e-4 (no dot) as a string; OverflowError: an int beyond float's range.
        with contextlib.suppress(ValueError, OverflowError):
            return float(value)
    matches = {
        Literal: lambda: value in args and not isinstance(value, bool),
        dict: lambda: isinstance(value, dict),
        None: lambda: _is_plain_instance(value, kind),
    }
    check = matches.get(origin)
    return value if check is not None and check() else _NO_MATCH


def _names(hint: Any) -> list[str]:
    """What a type admits, in words: ``int``, ``null``, the names of a Literal, ``a mapping``."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    if union:
        return [name for kind in typing.get_args(hint) for name in _names(kind)]
    if hint is type(None):
        return ["null"]
    if typing.get_origin(hint) is Literal:
        return [str(value) for value in typing.get_args(hint)]
    if typing.get_origin(hint) is dict:
        return ["a mapping"]
    return [getattr(hint, "__name__", str(hint))]


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _is_plain_instance(value: Any, kind: Any) -> bool:
    # isinstance cannot test list[int] (handled item by item above); a bool is no int in a config.
    return (
        typing.get_origin(kind) is None
        and kind is not type(None)
        and isinstance(value, kind)
        and not (kind is int and isinstance(value, bool))
    )


def flag_options() -> dict[str, tuple[str, dataclasses.Field[Any]]]:
    """The options declared with a `flag`: shortcut name -> (dotted key, field). The shortcut is the
    option's name (``epochs``), the section's name for a section's ``name`` (``model``, ``data``), or the
    name the declaration gives (``layer_decay``)."""
    found: dict[str, tuple[str, dataclasses.Field[Any]]] = {}
    for section in dataclasses.fields(FitConfig):
        hint = typing.get_type_hints(FitConfig)[section.name]
        if not dataclasses.is_dataclass(hint):
            if section.metadata.get("flag"):
                found[section.name] = (section.name, section)
            continue
        for spec in dataclasses.fields(hint):
            flag = spec.metadata.get("flag")
            if flag:
                short = flag if isinstance(flag, str) else section.name if spec.name == "name" else spec.name
                found[short] = (f"{section.name}.{spec.name}", spec)
    return found


# Keyword arguments of `transferkit.fit` and flags of `transferkit fit`, as dotted config keys.
SHORTCUTS = {short: key for short, (key, _) in flag_options().items()}


@dataclass(frozen=True)
class Preset:
    """A named recipe: config values that replace the defaults, under a config file and flags."""

    help: str
    values: dict[str, Any]


PRESETS = {
    "default": Preset("the defaults: minutes on a laptop CPU", {}),
    # The ensemble spends more compute where it cannot hurt a choice: every image trains, and predictions
    # average 5 models. Its fold models train 14 epochs: scored out of fold on ELPV's 1,968 train images,
    # folds of 14 epochs led folds of 7 on every figure (benchmarks/results/elpv_levers_summary.md: 4-class
    # 80.6 against 79.3 %, binary 89.2 against 88.1 %, balanced accuracy 55.4 against 51.4 %), at twice
    # the time; the default keeps 7 for its time and for the few-label tasks, where 14 is unmeasured.
    "best": Preset(
        "the ensemble of 5 cross-validated fold models of 14 epochs each, chosen and calibrated "
        "out-of-fold: about 10 times the default's time, for a GPU or a long CPU run",
        {"cv.folds": 5, "cv.final": "ensemble", "train.epochs": 14},
    ),
}


def preset_config(name: str) -> FitConfig:
    """The defaults with preset `name`'s values in place."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r} (--preset); choose one of {_listing(list(PRESETS))}.")
    return FitConfig().with_overrides(PRESETS[name].values)


def resolve_config(
    config: FitConfig | str | Path | None = None, *, preset: str | None = None, **options: Any
) -> FitConfig:
    """A FitConfig from an object or a YAML file (over `preset`'s values, when named), then shortcut
    (``epochs=3``) or dotted options."""
    if isinstance(config, FitConfig) and preset is not None:
        raise ConfigError(
            f"A FitConfig object sets every key, so preset {preset!r} would change nothing: start from "
            f"resolve_config(preset={preset!r}) and change that config, or pass a YAML file."
        )
    base = preset_config(preset) if preset is not None else None
    if config is None:
        config = base or FitConfig()
    elif not isinstance(config, FitConfig):
        config = FitConfig.from_yaml(config, base)
    sections = {f.name for f in dataclasses.fields(FitConfig)}
    for key in options:
        if "." not in key and key not in SHORTCUTS and key not in sections:
            raise ConfigError(_unknown_key_message(key, key, dict.fromkeys([*SHORTCUTS, *sections])))
    return config.with_overrides({SHORTCUTS.get(key, key): value for key, value in options.items()})
