"""Fuzzing the model spec parser: any text gives a parsed spec or a transferkit error, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transferkit.errors import ConfigError, TransferkitError, UnknownNameError
from transferkit.models.sources import ModelSpec, model_sources, packaged_models, parse_model_spec

TimeLimit = Callable[[float], AbstractContextManager[None]]

SOURCES = sorted(model_sources.names())
# Registered prefixes, look-alikes and a Windows drive, each followed by anything.
prefixed = st.tuples(
    st.sampled_from([*SOURCES, "Timm", "hf-hub", "http", "C", "x"]), st.sampled_from([":", "::"]), st.text()
).map("".join)
pathlike = st.tuples(
    st.sampled_from(["", ".", "./", "~", "/", "..\\", "C:\\"]),
    st.text(max_size=40),
    st.sampled_from(["", ".pth", ".safetensors", "/model", "\\w.bin"]),
).map("".join)
# Longer than a file name may be (255 bytes): the parser must not let the OS error through.
too_long = st.text(min_size=130, max_size=600)
specs = st.text() | prefixed | pathlike | too_long | st.sampled_from(sorted(packaged_models.names()))


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(spec=specs)
@example(spec="x" * 300)  # was: OSError "File name too long" from Path.exists
@example(spec="é" * 200)
@example(spec="timm:")
@example(spec="")
def test_any_text_parses_or_raises_a_transferkit_error(spec: str, time_limit: TimeLimit) -> None:
    with time_limit(10):
        try:
            parsed = parse_model_spec(spec)
        except TransferkitError as err:
            assert str(err)
            return
    assert isinstance(parsed, ModelSpec)
    if parsed.source in SOURCES:
        assert spec == f"{parsed.source}:{parsed.name}" and parsed.name.strip()
    elif parsed.source == "packaged":
        assert parsed.name == spec and spec in packaged_models
    else:
        assert (parsed.source, parsed.name) == ("path", spec) and spec.strip()


@pytest.mark.parametrize("spec", ["x" * 300, "é" * 200, "a" * 256 + ":b"])
def test_a_name_too_long_for_a_path_is_an_unknown_name(spec: str) -> None:
    with pytest.raises(UnknownNameError, match="Unknown model"):
        parse_model_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", r"The model spec is empty: give a packaged model .*timm:resnet18"),
        ("   ", r"The model spec is empty"),
        ("timm:", r"'timm:' names nothing after timm:; write timm:NAME"),
        ("run: ", r"'run: ' names nothing after run:; write run:NAME"),
        ("file:", r"write file:NAME"),
    ],
)
def test_an_empty_spec_or_name_is_refused(spec: str, message: str) -> None:
    # Path("") is the working directory, so an empty name used to load whatever model lay there.
    with pytest.raises(ConfigError, match=message):
        parse_model_spec(spec)
