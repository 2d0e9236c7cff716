"""Step 3: preprocessing from the weights' config (timm's resize and crop), normalization, augmentation
presets, test-time views.

The names below load their module on first use: `Preprocessing` needs neither torch nor torchvision,
so that predicting with an exported model starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferkit.lazy import lazy_names

if TYPE_CHECKING:
    from transferkit.transforms.augment import AugmentPreset, augment_presets, create_augmentation
    from transferkit.transforms.normalize import Normalize
    from transferkit.transforms.preprocessing import CROP_MODES, Preprocessing

_MODULES = {
    "AugmentPreset": "augment",
    "augment_presets": "augment",
    "create_augmentation": "augment",
    "Normalize": "normalize",
    "CROP_MODES": "preprocessing",
    "Preprocessing": "preprocessing",
}

__all__ = [
    "CROP_MODES",
    "AugmentPreset",
    "Normalize",
    "Preprocessing",
    "augment_presets",
    "create_augmentation",
]

__getattr__ = lazy_names(__name__, _MODULES)
