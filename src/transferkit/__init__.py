"""transferkit: transfer learning on images.

Load a pretrained model, adapt it to a new task with few labels, evaluate it honestly, ship it.

    >>> import transferkit
    >>> run = transferkit.fit(data="elpv", model="efficientnet_lite0")  # doctest: +SKIP
    >>> run.headline["binary_accuracy"]  # doctest: +SKIP
    >>> model = transferkit.load(run.dir)  # doctest: +SKIP
    >>> model.predict(["cell.png"], top_k=2)  # doctest: +SKIP
    >>> transferkit.suggest(run.dir, pool="photos/", budget=20)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transferkit.config import FitConfig

if TYPE_CHECKING:
    from transferkit.active.suggest import suggest
    from transferkit.api.evaluate import evaluate
    from transferkit.api.fit import Run, fit
    from transferkit.export.predictor import load

__all__ = ["FitConfig", "Run", "evaluate", "fit", "load", "suggest"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`fit`, `Run`, `load`, `evaluate` and `suggest` import on first use: torch and the training stack take
    seconds to import, `--help` should not; `load` and `evaluate` never import Lightning at all."""
    if name in ("Run", "fit"):
        return getattr(importlib.import_module("transferkit.api.fit"), name)
    if name == "load":
        return importlib.import_module("transferkit.export.predictor").load
    if name == "evaluate":
        return importlib.import_module("transferkit.api.evaluate").evaluate
    if name == "suggest":  # which pool images to label next (active learning)
        return importlib.import_module("transferkit.active.suggest").suggest
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
