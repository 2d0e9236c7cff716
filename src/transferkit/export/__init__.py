"""Step 5b: ship the fine-tuned model."""

from transferkit.export.bundle import BundleInfo, save_bundle

__all__ = ["BundleInfo", "save_bundle"]
