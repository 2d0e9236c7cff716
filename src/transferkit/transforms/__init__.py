"""Step 3: preprocessing from the weights' config (timm's resize and crop), normalization, augmentation
presets, test-time views."""

from transferkit.transforms.augment import AugmentPreset, augment_presets, create_augmentation
from transferkit.transforms.normalize import Normalize
from transferkit.transforms.preprocessing import CROP_MODES, Preprocessing

__all__ = [
    "CROP_MODES",
    "AugmentPreset",
    "Normalize",
    "Preprocessing",
    "augment_presets",
    "create_augmentation",
]
