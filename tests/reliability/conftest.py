"""Shared pieces of the reliability tests: a hang guard for fuzzed calls and a small saved bundle."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from transferkit.export import BundleInfo, save_bundle
from transferkit.models import resolve_model
from transferkit.testing import hangs

ARCH = "test_efficientnet"  # timm's tiny test network: built in milliseconds, no download
LABELS = ["cat", "dog", "fox"]


@pytest.fixture(scope="session")
def time_limit() -> Callable[[float], AbstractContextManager[None]]:
    """``with time_limit(5): call()`` fails the example with `Hang` if the call never returns.

    Hypothesis's deadline only measures calls that return, so it cannot catch a hang by itself.
    """
    return hangs.time_limit


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete bundle (config.json, model.safetensors, README.md) of a random-init 3-class network.

    Tests copy it before damaging it.
    """
    backbone = resolve_model(f"timm:{ARCH}", pretrained=False)
    backbone.reset_head(len(LABELS))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    return save_bundle(
        backbone, BundleInfo(LABELS, {}, "animals"), tmp_path_factory.mktemp("saved") / "bundle"
    )
