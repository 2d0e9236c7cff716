"""transferkit: transfer learning on images.

Load a pretrained model, adapt it to a new task with few labels, evaluate it honestly, ship it.

    >>> import transferkit
    >>> run = transferkit.fit(data="elpv", model="efficientnet_lite0")  # doctest: +SKIP
    >>> run.headline["binary_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transferkit.config import FitConfig

if TYPE_CHECKING:
    from transferkit.api import Run, fit

__all__ = ["FitConfig", "Run", "fit"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`fit` and `Run` load on first use: the training stack takes seconds to import, `--help` should not."""
    if name in ("Run", "fit"):
        return getattr(importlib.import_module("transferkit.api"), name)
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
