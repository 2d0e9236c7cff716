"""Learning from the unlabeled pool: semi-supervised methods, registered by name (`semi_methods`)."""

from transferkit.training.semi.base import PoolCheck, SemiMethod, Teacher, create_semi_method, semi_methods
from transferkit.training.semi.fixmatch import FixMatch, FlexMatch
from transferkit.training.semi.pseudo_label import PseudoLabel, PseudoLabels, self_train
from transferkit.training.semi.self_training import SelfTraining

__all__ = [
    "FixMatch",
    "FlexMatch",
    "PoolCheck",
    "PseudoLabel",
    "PseudoLabels",
    "SelfTraining",
    "SemiMethod",
    "Teacher",
    "create_semi_method",
    "self_train",
    "semi_methods",
]
