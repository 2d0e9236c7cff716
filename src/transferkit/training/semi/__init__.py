"""Learning from the unlabeled pool: FixMatch consistency and pseudo-label self-training."""

from transferkit.training.semi.fixmatch import Consistency
from transferkit.training.semi.pseudo_label import PseudoLabels, self_train

__all__ = ["Consistency", "PseudoLabels", "self_train"]
