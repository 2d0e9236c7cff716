"""`transferkit fit`'s flags, generated from the config's option declarations: the type, the allowed
names (a `Literal`) and the help are written once, in `config.py`, and cannot drift from the flags."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from transferkit.config import FitConfig, flag_options
from transferkit.registry import Registry


def add_config_flags(parser: argparse.ArgumentParser, methods: dict[str, Registry[Any]]) -> None:
    """One flag per option declared with ``flag=True``; `methods` lists the registered names of the
    method options (``--strategy``). Every flag defaults to None: only what is given overrides."""
    for short, (key, spec) in flag_options().items():
        hint = _field_type(key)
        names = methods[short].names() if short in methods else None
        parser.add_argument(f"--{short.replace('_', '-')}", dest=short, **flag_arguments(hint, spec, names))


def flag_arguments(hint: Any, spec: dataclasses.Field[Any], names: list[str] | None = None) -> dict[str, Any]:
    """argparse's keyword arguments for one option: action or type, choices, metavar and help."""
    kinds = [k for k in _union_members(hint) if k is not type(None)]
    literals = [value for k in kinds if typing.get_origin(k) is Literal for value in typing.get_args(k)]
    others = [k for k in kinds if typing.get_origin(k) is not Literal]
    help_text = spec.metadata.get("help", "") + (f"; one of: {', '.join(names)}" if names else "")
    if spec.default is not dataclasses.MISSING and spec.default is not None:
        help_text += f" (default: {spec.default})"
    if others == [bool]:
        return {"action": argparse.BooleanOptionalAction, "default": None, "help": help_text}
    if others and typing.get_origin(others[0]) is list:  # a list of names: --class-order low mid high
        return {"nargs": "+", "type": str, "metavar": "NAME", "default": None, "help": help_text}
    if not others:  # a set of names: argparse lists and checks them
        return {"type": type(literals[0]), "choices": literals, "default": None, "help": help_text}
    arguments: dict[str, Any] = {"type": _parser(others[0], literals), "default": None, "help": help_text}
    if literals:
        arguments["metavar"] = f"{others[0].__name__.upper()}|{'|'.join(map(str, literals))}"
    return arguments


def _parser(kind: Any, names: list[Any]) -> Callable[[str], Any]:
    """A number, or one of `names` (``--lr auto``); a method spec or a path stays text."""
    if not isinstance(kind, type) or kind not in (int, float):
        return str

    def parse(text: str) -> Any:
        return text if text in names else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _field_type(key: str) -> Any:
    hint: Any = FitConfig
    for part in key.split("."):
        hint = typing.get_type_hints(hint)[part]
    return hint


def _union_members(hint: Any) -> tuple[Any, ...]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)
