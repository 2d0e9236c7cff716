"""Shared pieces of the reliability tests: a hang guard for fuzzed calls and a small saved bundle."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import FrameType

import pytest

from transferkit.export import BundleInfo, save_bundle
from transferkit.models import resolve_model

ARCH = "test_efficientnet"  # timm's tiny test network: built in milliseconds, no download
LABELS = ["cat", "dog", "fox"]


class Hang(Exception):
    """Raised inside a call that ran past its time limit; no transferkit code catches it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def give_up(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def time_limit() -> Callable[[float], AbstractContextManager[None]]:
    """``with time_limit(5): call()`` fails the example with `Hang` if the call never returns.

    Hypothesis's deadline only measures calls that return, so it cannot catch a hang by itself.
    """
    return _time_limit


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
