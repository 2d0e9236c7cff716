"""K folds of the training images for cross-validation: stratified by class, groups kept whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from transferkit.data.source import ImageSource
from transferkit.errors import DataError


def make_folds(source: ImageSource, indices: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """`indices` dealt into `folds` held-out parts, each keeping the class proportions; records that
    share a `group` always land in the same part (StratifiedGroupKFold). Seeded by `seed`."""
    records = [source.records[i] for i in indices]
    labels = np.array([r.label for r in records])
    smallest = min(Counter(labels.tolist()).values())
    if smallest < folds:
        raise DataError(
            f"{folds}-fold cross-validation needs at least {folds} train images of every class; the "
            f"smallest class has {smallest}. Use fewer folds (--folds {max(2, smallest)}) or more images."
        )
    groups = [r.group for r in records]
    if any(groups):
        unnamed = (f"\0{position}" for position in range(len(groups)))  # an image without a group is its own
        keyed = [group or next(unnamed) for group in groups]
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(labels)), labels, keyed)
    else:
        parts = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    held_out = [sorted(int(indices[p]) for p in part) for _, part in parts]
    if any(not part for part in held_out):
        raise DataError(f"{len(set(groups))} groups cannot fill {folds} folds; use fewer folds.")
    return held_out
