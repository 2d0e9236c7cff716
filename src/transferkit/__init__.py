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

from typing import TYPE_CHECKING

from transferkit.config import FitConfig
from transferkit.lazy import lazy_names

if TYPE_CHECKING:
    from transferkit.active.suggest import suggest
    from transferkit.api.evaluate import evaluate
    from transferkit.api.fit import Run, fit
    from transferkit.export.predictor import load

__all__ = ["FitConfig", "Run", "evaluate", "fit", "load", "suggest"]
__version__ = "0.1.0"


# `fit`, `Run`, `load`, `evaluate` and `suggest` import on first use: torch and the training stack take
# seconds to import, `--help` should not; `load` and `evaluate` never import Lightning at all.
__getattr__ = lazy_names(
    __name__,
    {
        "Run": "api.fit",
        "fit": "api.fit",
        "load": "export.predictor",
        "evaluate": "api.evaluate",
        "suggest": "active.suggest",  # which pool images to label next (active learning)
    },
)
