"""Step 3: normalization from the model, augmentation presets, test-time views."""

from transferkit.transforms.augment import AugmentPreset, augment_presets, create_augmentation
from transferkit.transforms.normalize import Normalize

__all__ = ["AugmentPreset", "Normalize", "augment_presets", "create_augmentation"]
