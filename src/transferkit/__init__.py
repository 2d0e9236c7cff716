"""transferkit: transfer learning on images.

Load a pretrained model, adapt it to a new task with few labels, evaluate it honestly, ship it.

    >>> import transferkit
    >>> run = transferkit.fit(data="elpv", model="efficientnet_lite0")  # doctest: +SKIP
    >>> run.headline["binary_accuracy"]  # doctest: +SKIP
"""

from transferkit.api import Run, fit
from transferkit.config import FitConfig

__all__ = ["FitConfig", "Run", "fit"]
__version__ = "0.1.0"
