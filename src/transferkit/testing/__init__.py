"""Tiny models and synthetic image sets, shipped so that users' tests can use them too."""

from transferkit.testing.synthetic import make_image_folder, tiny_fit_config

__all__ = ["make_image_folder", "tiny_fit_config"]
