"""Train/val/test splits: a source's own split is respected, the rest is split seeded and stratified."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.model_selection import train_test_split

from transferkit.data.source import SPLIT_NAMES, ImageSource
from transferkit.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Indices into `ImageSource.records` for each split."""

    train: list[int]
    val: list[int]
    test: list[int]

    def items(self) -> list[tuple[str, list[int]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


def make_splits(source: ImageSource, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Assigns every record to a split.

    Records the source placed stay where they are. Unplaced records form the test split when the source
    has none (`test_fraction` of them), and validation is carved out of train when the source has none.
    Both are stratified by label and by the record's group.
    """
    by_split: dict[str, list[int]] = {name: [] for name in ("", *SPLIT_NAMES)}
    for index, record in enumerate(source.records):
        if record.split not in by_split:
            raise DataError(f"Record {record.path} has split {record.split!r}; valid: {SPLIT_NAMES}.")
        by_split[record.split].append(index)
    train, val, test = by_split["train"] + by_split[""], by_split["val"], by_split["test"]
    if not test:
        train, test = stratified_split(source, train, test_fraction, seed, key="data.test_fraction")
    if not val and val_fraction > 0:
        train, val = stratified_split(source, train, val_fraction, seed, key="data.val_fraction")
    return Splits(sorted(train), sorted(val), sorted(test))


def stratified_split(
    source: ImageSource, indices: Sequence[int], fraction: float, seed: int, key: str = "fraction"
) -> tuple[list[int], list[int]]:
    """Splits `indices` into (rest, `fraction` of them), keeping class and group proportions."""
    if not 0 < fraction < 1:
        raise DataError(f"{key} must lie between 0 and 1, got {fraction}.")
    part = math.ceil(fraction * len(indices))
    if part >= len(indices):
        raise DataError(
            f"{len(indices)} image(s) cannot be split with {key}={fraction}: add images, or give the "
            "source its own split (train/ and test/ folders)."
        )
    records = [source.records[i] for i in indices]
    candidates = ([f"{r.label}/{r.group}" for r in records], [str(r.label) for r in records])
    keys = _stratification(candidates, smallest_part=min(part, len(indices) - part))
    rest, chosen = train_test_split(np.asarray(indices), test_size=part, stratify=keys, random_state=seed)
    return rest.tolist(), chosen.tolist()


def _stratification(candidates: Sequence[list[str]], smallest_part: int) -> list[str] | None:
    # The finest keys that can be honoured: every stratum needs two members, and each part needs room
    # for one image per stratum. Falls back to coarser keys, then to a plain random split.
    for keys in candidates:
        counts = Counter(keys)
        if min(counts.values()) >= 2 and len(counts) <= smallest_part:
            return keys
    return None


def subsample(source: ImageSource, size: int, seed: int) -> ImageSource:
    """A stratified random subset of `size` records, keeping each split's and class's share."""
    if not 0 < size < len(source.records):
        return source
    keys = [f"{r.split}/{r.label}" for r in source.records]
    stratify = _stratification([keys], smallest_part=min(size, len(keys) - size))
    kept, _ = train_test_split(np.arange(len(keys)), train_size=size, stratify=stratify, random_state=seed)
    return replace(source, records=[source.records[i] for i in sorted(kept.tolist())])


def class_counts(source: ImageSource, splits: Splits) -> dict[str, dict[str, int]]:
    """Images per class for each split, for reports."""
    counts = {}
    for name, indices in splits.items():
        per_class = Counter(source.records[i].label for i in indices)
        counts[name] = {c: per_class.get(k, 0) for k, c in enumerate(source.class_names)}
    return counts
