from pathlib import Path

import pytest

from transferkit.config import FitConfig, parse_override, resolve_config
from transferkit.errors import ConfigError


def test_defaults_are_the_embedded_default() -> None:
    config = FitConfig()
    assert (config.model.name, config.data.name, config.train.strategy) == (
        "efficientnet_lite0",
        "elpv",
        "fine-tune",
    )


def test_yaml_round_trip_keeps_every_value(tmp_path: Path) -> None:
    config = FitConfig().with_overrides({"train.lr": 3e-4, "preprocess.image_size": 160, "seed": 7})
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
        ({"train.lr": "fast"}, "must be float"),
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
        ({"train.devices": 2}, "multi-device training is not supported yet"),
        ({"data.val_fraction": 1.0}, "'data.val_fraction' must lie in"),
        ({"preprocess.image_size": 8}, "at least 16 px"),
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
