"""Fuzzing the config loader: dicts, YAML text, overrides and keyword options give a FitConfig or a
ConfigError (a TransferkitError), never another exception or a hang.

Keys come from the config dataclasses themselves, so new keys are fuzzed without editing this file.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from transferkit.config import SHORTCUTS, FitConfig, parse_override, resolve_config
from transferkit.errors import TransferkitError

TimeLimit = Callable[[float], AbstractContextManager[None]]
# A hang guard, not a speed test: pure-Python YAML takes seconds on the 2,000-bracket example below,
# and a busy 2-core machine has taken more than 10 s.
HANG_S = 60
# One failure per test, so that `raises` below sees its type rather than an ExceptionGroup.
FUZZ = settings(
    max_examples=150, deadline=None, report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow]
)

HINTS = typing.get_type_hints(FitConfig)
SECTIONS = list(HINTS)
SECTION_KEYS = {
    name: [f.name for f in dataclasses.fields(hint)]
    for name, hint in HINTS.items()
    if dataclasses.is_dataclass(hint)
}
DOTTED = [f"{section}.{key}" for section, keys in SECTION_KEYS.items() for key in keys]

# What YAML can hold: scalars of every type (numbers beyond float's range too), lists and mappings.
scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=10**308, max_value=10**400)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["auto", "none", "3e-4", "1e999", "nan", "32-true", "fine-tune", ""])
)
key = st.sampled_from(sorted({k for keys in SECTION_KEYS.values() for k in keys} | set(SECTIONS)))
any_key = key | st.text(max_size=8) | st.integers() | st.none()
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_key, inner, max_size=3),
    max_leaves=8,
)


def _section(name: str) -> st.SearchStrategy[Any]:
    """A section with a few of its own keys (most values of plausible types), now and then junk."""
    own = st.dictionaries(st.sampled_from(SECTION_KEYS[name]), scalar, max_size=4)
    return own | st.dictionaries(any_key, value, max_size=3) | value


config_dict = st.fixed_dictionaries(
    {}, optional={name: _section(name) if name in SECTION_KEYS else scalar for name in SECTIONS}
) | st.dictionaries(any_key, value, max_size=3)


def _is_config_or_error(build: Callable[[], FitConfig], time_limit: TimeLimit) -> None:
    with time_limit(HANG_S):
        try:
            config = build()
        except TransferkitError as err:
            assert str(err)
            return
    assert isinstance(config, FitConfig)
    # Whatever was accepted is written out and read back unchanged.
    assert FitConfig.from_dict(yaml.safe_load(config.to_yaml())).to_yaml() == config.to_yaml()


@pytest.mark.fuzz
@FUZZ
@given(values=config_dict)
@example(values={1: 2})  # TypeError: int key joined to a str prefix
@example(values={"train": {"lr": 10**400}})  # OverflowError from float()
def test_from_dict(values: dict[Any, Any], time_limit: TimeLimit) -> None:
    _is_config_or_error(lambda: FitConfig.from_dict(values), time_limit)


# YAML text: dumps of random configs, and text from YAML's own syntax; then a few bytes overwritten.
yaml_syntax = st.text(alphabet=st.sampled_from(list("{}[]:,-#&*!|>'\"%@`?~ \n\tabs0129.eE+_")), max_size=60)
yaml_text = yaml_syntax | config_dict.map(lambda values: yaml.safe_dump(values, sort_keys=False))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs") / "config.yaml"


@pytest.mark.fuzz
@FUZZ
@given(text=yaml_text, edits=st.binary(max_size=6))
@example(text="seed: 2020-13-45\n", edits=b"")  # ValueError: a date that does not exist
@example(text="seed: !!float abc\n", edits=b"")
@example(text="train: " + "[" * 2000 + "]" * 2000, edits=b"")  # RecursionError
def test_from_yaml_text(config_file: Path, text: str, edits: bytes, time_limit: TimeLimit) -> None:
    data = bytearray(text.encode())
    for position, byte in zip(edits[::2], edits[1::2], strict=False):  # a few bytes overwritten
        if data:
            data[position % len(data)] = byte
    config_file.write_bytes(bytes(data))
    _is_config_or_error(lambda: FitConfig.from_yaml(config_file), time_limit)


@pytest.mark.fuzz
@FUZZ
@given(
    key=st.sampled_from(DOTTED) | st.text(max_size=8).filter(lambda text: "=" not in text),
    raw=yaml_syntax | st.text(max_size=20),
)
@example(key="train.lr", raw="[")  # yaml ParserError
@example(key="seed", raw="2020-13-45")
def test_parse_override(key: str, raw: str, time_limit: TimeLimit) -> None:
    text = f"{key}={raw}"
    with time_limit(HANG_S):
        try:
            parsed_key, parsed_value = parse_override(text)
        except TransferkitError as err:
            assert str(err)
            return
    assert parsed_key == key.strip()
    _is_config_or_error(lambda: FitConfig().with_overrides({parsed_key: parsed_value}), time_limit)


options = st.dictionaries(
    st.sampled_from([*SHORTCUTS, *DOTTED, *SECTIONS]) | st.text(max_size=8), value, max_size=4
)


@pytest.mark.fuzz
@FUZZ
@given(options=options)
@example(options={"lr": 10**400})  # OverflowError from float()
def test_resolve_config_options(options: dict[str, Any], time_limit: TimeLimit) -> None:
    _is_config_or_error(lambda: resolve_config(None, **options), time_limit)
