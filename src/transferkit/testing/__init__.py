"""Tiny models and synthetic image sets, shipped so that users' tests can use them too."""

from transferkit.testing.problems import BAD_FILES, make_problem_folder
from transferkit.testing.synthetic import make_image_folder, tiny_fit_config

__all__ = ["BAD_FILES", "make_image_folder", "make_problem_folder", "tiny_fit_config"]
