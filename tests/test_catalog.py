"""The catalog names what ships without importing it: its declarations must match what the modules
register, its packaged-model facts must match timm, and the command line must start without torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import timm

from transferkit import catalog
from transferkit.registry import Registry
from transferkit.training.method_options import BUILT_IN_OPTIONS, resolve_method_options

REGISTRIES = {
    "strategies": catalog.strategies,
    "semi_methods": catalog.semi_methods,
    "regularizers": catalog.regularizers,
    "augment_presets": catalog.augment_presets,
}


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_declared_name_is_registered_by_its_module(name: str) -> None:
    registry = REGISTRIES[name]
    for entry in registry.names():
        assert registry.get(entry) is not None  # imports the declaring module, which must register it


def test_implementation_modules_register_nothing_undeclared() -> None:
    for module in ("strategies", "semi"):
        importlib.import_module(f"transferkit.training.{module}")
    importlib.import_module("transferkit.training.regularizers")
    importlib.import_module("transferkit.transforms.augment")
    for name, registry in REGISTRIES.items():
        assert sorted(registry._entries) == sorted(registry._declared), name


@pytest.mark.parametrize("registry", list(BUILT_IN_OPTIONS), ids=lambda registry: registry.kind)
def test_every_built_in_method_takes_its_declared_options(registry: Registry[type]) -> None:
    for name in registry.names():
        method = registry.get(name)
        assert (method.Options, method.argument) == resolve_method_options(registry, name), name


def test_a_declared_name_whose_module_does_not_register_it_is_an_error() -> None:
    registry: Registry[int] = Registry("thing")
    registry.declare("ghost", "transferkit.errors")
    assert "ghost" in registry and registry.is_declared("ghost") and registry.names() == ["ghost"]
    with pytest.raises(RuntimeError, match=r"transferkit\.errors should register the thing 'ghost'"):
        registry.get("ghost")


@pytest.mark.parametrize("model", catalog.PACKAGED, ids=lambda model: model.name)
def test_packaged_facts_match_the_timm_architecture(model: catalog.PackagedModel) -> None:
    network = timm.create_model(model.architecture, pretrained=False)
    assert sum(p.numel() for p in network.parameters()) == model.parameters
    assert network.pretrained_cfg["input_size"] == (3, model.input_px, model.input_px)


STARTS_WITHOUT_TORCH = """
import sys
from transferkit.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = sorted(m for m in ("torch", "timm", "lightning", "sklearn", "PIL", "numpy") if m in sys.modules)
print("heavy:", ",".join(heavy), "status:", status)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["fit", "--help"],
        ["models"],
        ["fit", "--epochs", "many"],
        ["predict", "--help"],
        ["serve", "--help"],
        ["fit", "--print-config"],
        ["fit", "--strategy", "lora", "--print-config"],
        ["fit", "--semi", "fixmatch", "--labels-per-class", "4", "--print-config"],
        [
            "fit",
            "--strategy",
            "partial:2",
            "--regularizer",
            "l2-sp",
            "--semi",
            "pseudo-label",
            "--print-config",
        ],
        ["fit", "--set", "train.strategy.frozen_groups=2", "--data", "digits", "--print-config"],
    ],
    ids=" ".join,
)
def test_help_listing_and_argument_errors_import_no_torch(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", STARTS_WITHOUT_TORCH, *argv], capture_output=True, text=True, check=True
    )
    heavy, status = result.stdout.split("heavy:")[-1].split("status:")
    assert heavy.strip() == "", f"{' '.join(argv)} imported {heavy.strip()}"
    expected = 2 if argv[-1] == "many" else 0
    assert int(status) == expected, result.stderr
