"""Methods resolve from their declared options, without torch, to exactly what fit records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from transferkit import catalog
from transferkit.cli.main import main
from transferkit.config import AT_LEAST_1, FitConfig, option, parse_override, resolve_config
from transferkit.errors import TransferkitError
from transferkit.training.method_options import resolve_method_spec, with_resolved_options
from transferkit.training.methods import with_resolved_methods
from transferkit.training.strategies import FinetuneStrategy

EVERY_METHOD = [
    *(f"train.strategy={name}" for name in catalog.strategies.names() if name != "partial"),
    *(f"train.semi={name}" for name in catalog.semi_methods.names()),
    *(f"train.regularizer={name}" for name in catalog.regularizers.names()),
]


@pytest.mark.parametrize(
    "overrides",
    [
        *([override] for override in EVERY_METHOD),
        ["train.strategy=partial:2", "train.regularizer=l2-sp", "train.semi=pseudo-label"],
        ["train.strategy=lora", "train.strategy.rank=4", "train.semi=fixmatch", "train.semi.ratio=3"],
        ["train.strategy={name: gradual, unfreeze_milestones: [1, 3]}"],
        ["train.regularizer={name: l2-sp, strength: 0.1}", "train.epochs=2"],
    ],
    ids=" ".join,
)
def test_the_printed_config_is_the_one_fit_records(
    overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", *(arg for text in overrides for arg in ("--set", text)), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    config = resolve_config(None, **dict(parse_override(text) for text in overrides))
    assert printed == with_resolved_methods(config).to_dict()  # the methods created, as fit does


@pytest.mark.parametrize(
    "train",
    [
        {"strategy": "partial"},
        {"strategy": "partial:0"},
        {"strategy": "bitfit:2"},
        {"strategy": {"name": "lora", "rank": 0}},
        {"strategy": {"name": "lora", "ranks": 2}},
        {"semi": {"name": "fixmatch", "threshold": 1}},
        {"regularizer": "l2"},
    ],
    ids=str,
)
def test_a_bad_method_option_fails_as_when_the_method_is_created(train: dict[str, Any]) -> None:
    config = FitConfig().with_overrides({f"train.{key}": value for key, value in train.items()})
    with pytest.raises(TransferkitError) as created:
        with_resolved_methods(config)
    with pytest.raises(type(created.value), match=re.escape(str(created.value))):
        with_resolved_options(config)


def test_a_method_registered_at_run_time_resolves_through_its_own_options() -> None:
    @catalog.strategies.register("top-only")
    class TopOnly(FinetuneStrategy):
        @dataclass
        class Options:
            groups: int = option(1, "layer groups below the head that train", within=AT_LEAST_1)

        name = "top-only"
        argument = "groups"

    try:
        spec = resolve_method_spec(catalog.strategies, "top-only:2", "train.strategy")
    finally:
        catalog.strategies.remove("top-only")
    assert spec == {"name": "top-only", "groups": 2}
