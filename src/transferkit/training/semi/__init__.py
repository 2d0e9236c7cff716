"""Learning from the unlabeled pool: semi-supervised methods, registered by name (`semi_methods`)."""

from transferkit.training.semi.base import SemiMethod, create_semi_method, semi_methods
from transferkit.training.semi.fixmatch import FixMatch, FlexMatch
from transferkit.training.semi.pseudo_label import PseudoLabel, PseudoLabels, self_train

__all__ = [
    "FixMatch",
    "FlexMatch",
    "PseudoLabel",
    "PseudoLabels",
    "SemiMethod",
    "create_semi_method",
    "self_train",
    "semi_methods",
]
