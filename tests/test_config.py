import dataclasses
import functools
from pathlib import Path

import pytest

from transferkit.config import (
    PRESETS,
    DataConfig,
    FitConfig,
    ModelConfig,
    PreprocessConfig,
    Preset,
    TrainConfig,
    parse_override,
    preset_config,
    resolve_config,
)
from transferkit.errors import ConfigError, TransferkitError


def test_defaults_are_the_embedded_default() -> None:
    config = FitConfig()
    assert (config.model.name, config.data.name, config.train.strategy) == (
        "efficientnet_lite0",
        "elpv",
        "fine-tune",
    )


def test_yaml_round_trip_keeps_every_value(tmp_path: Path) -> None:
    config = FitConfig().with_overrides({"train.lr": 5e-4, "preprocess.image_size": 160, "seed": 7})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert FitConfig.from_yaml(path) == config


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.lr=0.0003", "train.lr", 3e-4),
        ("train.epochs=3", "train.epochs", 3),
        ("model.pretrained=false", "model.pretrained", False),
        ("data.name=C:\\data\\cells", "data.name", "C:\\data\\cells"),
        ("data.name=elpv:binary", "data.name", "elpv:binary"),
        ("preprocess.image_size=null", "preprocess.image_size", None),
    ],
)
def test_parse_override(text: str, key: str, value: object) -> None:
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.lrr": 1.0}, "Did you mean 'lr'"),
        ({"trian.lr": 1.0}, "Did you mean 'train'"),
        ({"train.epochs": "many"}, "must be int"),
        ({"train.epochs": True}, "must be int"),
        ({"train.lr": "fast"}, "'train.lr' must be float or auto, got 'fast'"),
        ({"model": 3}, "must be a mapping"),
    ],
)
def test_bad_overrides_name_the_key(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FitConfig().with_overrides(overrides)


@pytest.mark.parametrize("text", ["train.lr=3e-4", "train.lr=3.0e-4", "train.lr=0.0003"])
def test_scientific_notation_without_a_dot_is_a_float(text: str) -> None:
    assert FitConfig().with_overrides(dict([parse_override(text)])).train.lr == 3e-4


def test_ints_are_accepted_for_floats() -> None:
    assert FitConfig().with_overrides({"train.lr": 1}).train.lr == 1.0


def test_override_without_equals_sign_is_explained() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        FitConfig.from_yaml(path)


def test_shortcuts_and_dotted_keys_mix() -> None:
    config = resolve_config(None, data="digits", epochs=2, **{"train.lr_decay": 0.5})
    assert (config.data.name, config.train.epochs, config.train.lr_decay) == ("digits", 2, 0.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epochs": -1}, "'train.epochs' must be 0 or more"),
        ({"train.batch_size": 0}, "'train.batch_size' must be at least 1"),
        ({"train.lr_decay": 1.5}, r"'train.lr_decay' must lie in \(0, 1\]"),
        ({"runtime.devices": 0}, "'runtime.devices' must be at least 1"),
        ({"data.val_fraction": 1.0}, "'data.val_fraction' must lie in"),
        ({"preprocess.image_size": 8}, "'preprocess.image_size' must be at least 16 or null, got 8"),
    ],
)
def test_out_of_range_values_are_refused_before_any_work(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FitConfig().with_overrides(overrides)


def test_unknown_keyword_suggests_the_shortcut() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        resolve_config(None, epoch=3)


def test_an_explicit_null_overrides_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("preprocess:\n  image_size: 160\n")
    assert resolve_config(path, **{"preprocess.image_size": None}).preprocess.image_size is None


# Malformed config files, key by key: every error names the file or the dotted key, and what is valid.
def _load_yaml(tmp_path: Path, text: str) -> FitConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return FitConfig.from_yaml(path)


MALFORMED_YAML = {
    "unclosed brace": ("train: {lr: 1e-3\n", r"while parsing a flow mapping"),
    "tab indentation": ("train:\n\tlr: 0.1\n", r"found character '\\t' .*line 2"),
    "unclosed quote": ('model:\n  name: "timm:resnet18\n', r"while scanning a quoted scalar"),
    "bad indentation": ("train:\n  lr: 0.1\n epochs: 2\n", r"expected <block end>.*line 3"),
}


@pytest.mark.parametrize("case", MALFORMED_YAML.values(), ids=MALFORMED_YAML.keys())
def test_malformed_yaml_names_the_file_and_the_place(tmp_path: Path, case: tuple[str, str]) -> None:
    text, message = case
    with pytest.raises(ConfigError, match=r"(?s)Cannot read config file .*config\.yaml: .*" + message):
        _load_yaml(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some text\n", r"Config file .*config\.yaml must hold a mapping of keys, not str"),
        ("model: resnet18\n", r"Config section 'model\.' must be a mapping, got 'resnet18'"),
    ],
)
def test_yaml_of_the_wrong_shape_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load_yaml(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key", "closest", "section"),
    [
        ("trian: {}\n", "trian", "train", FitConfig),
        ("model: {nme: x}\n", "model.nme", "name", ModelConfig),
        ("data: {val_frac: 0.2}\n", "data.val_frac", "val_fraction", DataConfig),
        ("preprocess: {img_size: 64}\n", "preprocess.img_size", "image_size", PreprocessConfig),
        ("train: {epoch: 3}\n", "train.epoch", "epochs", TrainConfig),
    ],
    ids=["root", "model", "data", "preprocess", "train"],
)
def test_an_unknown_key_at_each_level_names_the_closest_and_every_valid_key(
    tmp_path: Path, text: str, key: str, closest: str, section: type
) -> None:
    with pytest.raises(
        ConfigError, match=rf"Unknown config key '{key}'\. Did you mean '{closest}'\?"
    ) as raised:
        _load_yaml(tmp_path, text)
    valid = str(raised.value).partition("Valid keys here: ")[2].rstrip(".").split(", ")
    assert sorted(valid) == sorted(field.name for field in dataclasses.fields(section))


# One case per kind of annotation: bool, str, str | None, int, int | None, float, float | None (list[int]
# is a method's option: see test_a_method_option_is_checked_when_the_method_is_created).
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {pretrained: yes please}\n", r"'model\.pretrained' must be bool, got 'yes please' \(str\)"),
        ("model: {name: 5}\n", r"'model\.name' must be str, got 5 \(int\)"),
        ("model: {arch: [a, b]}\n", r"'model\.arch' must be str or null, got \['a', 'b'\] \(list\)"),
        ("train: {batch_size: 8.5}\n", r"'train\.batch_size' must be int, got 8\.5 \(float\)"),
        ("data: {subset: all}\n", r"'data\.subset' must be int or null, got 'all' \(str\)"),
        ("data: {val_fraction: a tenth}\n", r"'data\.val_fraction' must be float, got 'a tenth' \(str\)"),
        (
            "data: {label_fraction: true}\n",
            r"'data\.label_fraction' must be float or null, got True \(bool\)",
        ),
        ("seed: {a: 1}\n", r"'seed' must be int, got \{'a': 1\} \(dict\)"),
    ],
    ids=["bool", "str", "str-or-null", "int", "int-or-null", "float", "float-or-null", "root"],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_type(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"Config key " + message):
        _load_yaml(tmp_path, text)


# Out-of-range values of every validated key not covered above; the message gives the valid range or choices.
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.test_fraction": 0}, r"'data\.test_fraction' must lie in \(0, 1\), got 0"),
        ({"data.subset": 0}, r"'data\.subset' must be positive or null"),
        ({"data.channels": 2}, r"'data\.channels' must be 1, 3, 4 or null, got 2"),
        ({"data.labels_per_class": 0}, r"'data\.labels_per_class' must be positive or null"),
        ({"data.label_fraction": 1.5}, r"'data\.label_fraction' must lie in \(0, 1\] or null"),
        (
            {"data.labels_per_class": 5, "data.label_fraction": 0.5},
            r"'data\.labels_per_class' and data\.label_fraction exclude each other",
        ),
        ({"data.bad_images": "ignore"}, r"'data\.bad_images' must be skip or error, got 'ignore'"),
        ({"train.lr": 0}, r"'train\.lr' must be positive or auto, got 0"),
        ({"train.optimizer": "adam"}, r"'train\.optimizer' must be adamw or sgd, got 'adam'"),
        ({"train.mixup": -0.5}, r"'train\.mixup' must be 0 or more, got -0\.5"),
        ({"train.cutmix": -1}, r"'train\.cutmix' must be 0 or more, got -1"),
        ({"train.ema_decay": 1}, r"'train\.ema_decay' must lie in \(0, 1\)"),
        ({"train.regularizer": 5}, r"'train\.regularizer' must be str or a mapping, got 5"),
        ({"train.balance": "yes"}, r"'train\.balance' must be none, auto, weights or sampler, got 'yes'"),
        ({"train.early_stopping": 0}, r"'train\.early_stopping' must be at least 1 or null"),
        ({"train.time_budget": 0}, r"'train\.time_budget' must be positive or null"),
        ({"train.accumulate": 0}, r"'train\.accumulate' must be at least 1"),
        (
            {"runtime.precision": "64"},
            r"'runtime\.precision' must be 32-true, 32, bf16-mixed or 16-mixed, got '64'",
        ),
        ({"runtime.checkpoint_every": 0}, r"'runtime\.checkpoint_every' must be at least 1"),
        ({"runtime.num_nodes": 0}, r"'runtime\.num_nodes' must be at least 1"),
        ({"runtime.distributed": "horovod"}, r"'runtime\.distributed' must be ddp or fsdp, got 'horovod'"),
    ],
)
def test_every_validated_key_refuses_out_of_range_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"Config key " + message):
        FitConfig().with_overrides(overrides)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({1: 2}, r"Unknown config key '1'\. Valid keys here: model"),
        ({"train": {None: 3}}, r"Unknown config key 'train\.None'\. Valid keys here: strategy"),
        ({"train": {"lr": 10**400}}, r"'train\.lr' must be float or auto, got"),
        ({"train": {"strategy": 3}}, r"'train\.strategy' must be str or a mapping, got 3"),
    ],
    ids=["int-key", "null-key", "int-beyond-float", "method-given-int"],
)
def test_any_dict_gives_a_config_error(values: dict[object, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FitConfig.from_dict(values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"seed: 2020-13-45\n", r"Cannot read config file .*month must be in 1\.\.12"),
        (b"seed: !!float abc\n", r"Cannot read config file .*could not convert string to float"),
        (b"seed: !!int abc\n", r"Cannot read config file .*invalid literal for int"),
        (b"seed: " + b"9" * 5000 + b"\n", r"Cannot read config file .*Exceeds the limit \(4300 digits\)"),
        (b'out: "\\UFFFFFFFF"\n', r"Cannot read config file .*config\.yaml"),
        (b"train: " + b"[" * 5000 + b"]" * 5000, r"Cannot read config file .*recursion"),
        (b"\xff\xfeseed: 1\n", r"Cannot read config file .*can't decode byte 0xff"),
    ],
    ids=[
        "impossible-date",
        "bad-float-tag",
        "bad-int-tag",
        "huge-int",
        "huge-escape",
        "deep-nesting",
        "utf-16",
    ],
)
def test_any_yaml_file_gives_a_config_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        FitConfig.from_yaml(path)


@pytest.mark.parametrize(
    "text", ["train.lr=[", "seed=2020-13-45", "out={a: 1", 'out="\\UFFFFFFFF"', "out=\x00"]
)
def test_an_override_with_a_malformed_value_says_to_quote_it(text: str) -> None:
    with pytest.raises(ConfigError, match=r"Override .* is not valid YAML .*Quote text"):
        parse_override(text)


def test_a_dotted_key_into_a_replaced_section_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"Unknown config key 'train\.strategy'"):
        resolve_config(None, train={None: 1}, strategy="fine-tune")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": -1}, r"'seed' must lie in \[0, 2\*\*32\)"),  # Lightning's seed_everything raises mid-fit
        ({"seed": 2**32}, r"'seed' must lie in \[0, 2\*\*32\)"),
        ({"data.split_seed": -1}, r"'data\.split_seed' must lie in \[0, 2\*\*32\)"),  # numpy refuses it
        ({"train.lr": float("inf")}, r"'train\.lr' must be positive"),
        ({"train.weight_decay": -0.1}, r"'train\.weight_decay' must be 0 or more"),  # AdamW raises mid-fit
        ({"train.label_smoothing": -1}, r"'train\.label_smoothing' must lie in \[0, 1\)"),  # silently used
        ({"train.warmup_fraction": 2}, r"'train\.warmup_fraction' must lie in \[0, 1\]"),
        ({"runtime.num_workers": -1}, r"'runtime\.num_workers' must be 0 or more"),
    ],
)
def test_unchecked_values_are_refused_before_any_work(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"Config key " + message):
        FitConfig().with_overrides(overrides)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"regularizer": "l2"}, r"Unknown regularizer 'l2'.*l2-sp"),
        ({"semi": "mean-teacher"}, r"Unknown semi-supervised method 'mean-teacher'.*fixmatch"),
        ({"strategy": {"name": "lora", "rank": 0}}, r"'train\.strategy\.rank' must be at least 1, got 0"),
        (
            {"strategy": {"name": "fine-tune", "frozen_groups": -1}},
            r"'train\.strategy\.frozen_groups' must be 0",
        ),
        (
            {"strategy": {"name": "gradual", "unfreeze_milestones": [2, "x"]}},
            r"'train\.strategy\.unfreeze_milestones\[1\]' must be int, got 'x'",
        ),
        (
            {"strategy": {"name": "gradual", "unfreeze_milestones": 3}},
            r"'train\.strategy\.unfreeze_milestones' must be list or null, got 3",
        ),
        (
            {"semi": {"name": "fixmatch", "threshold": 1}},
            r"'train\.semi\.threshold' must lie in \(0, 1\), got 1",
        ),
        (
            {"regularizer": {"name": "l2-sp", "strength": -1}},
            r"'train\.regularizer\.strength' must be 0 or more",
        ),
        ({"regularizer": {"strength": 1}}, r"'train\.regularizer' must name its method"),
    ],
)
def test_a_method_option_is_checked_when_the_method_is_created(
    train: dict[str, object], message: str
) -> None:
    from transferkit.training.methods import create_methods

    config = FitConfig().with_overrides({f"train.{key}": value for key, value in train.items()})
    with pytest.raises(TransferkitError, match=message):  # ConfigError, or UnknownNameError for a name
        create_methods(config)


def test_a_method_option_set_by_key_turns_a_method_name_into_its_mapping() -> None:
    config = resolve_config(None, strategy="lora", **{"train.strategy.rank": 4})
    assert config.train.strategy == {"name": "lora", "rank": 4}


def _value(config: FitConfig, dotted: str) -> object:
    return functools.reduce(getattr, dotted.split("."), config)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config_holding_its_values(name: str) -> None:
    config = preset_config(name)
    assert all(_value(config, key) == value for key, value in PRESETS[name].values.items())


def test_best_preset_differs_from_the_defaults() -> None:
    assert preset_config("best") != FitConfig()


def test_a_preset_sits_under_a_config_file_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"train.epochs": 3, "preprocess.image_size": 96, "train.strategy": {"name": "lora", "rank": 4}}
    monkeypatch.setitem(PRESETS, "small", Preset("for this test", values))
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  epochs: 5\n  strategy:\n    rank: 2\n")
    config = resolve_config(path, preset="small", image_size=128)
    # the file's keys win over the preset's, down to a method's option; the options win over both
    assert (config.train.epochs, config.preprocess.image_size) == (5, 128)
    assert config.train.strategy == {"name": "lora", "rank": 2}
    assert resolve_config(preset="small").preprocess.image_size == 96


def test_an_unknown_preset_or_a_preset_with_a_config_object_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Unknown preset 'fast'.*default or best"):
        resolve_config(preset="fast")
    with pytest.raises(ConfigError, match="sets every key"):
        resolve_config(FitConfig(), preset="best")
