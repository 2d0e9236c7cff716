"""Train/val/test splits: a source's own split is respected, the rest is split seeded and stratified."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from transferkit.data.decode import decode_image
from transferkit.data.groups import split_keeping_groups
from transferkit.data.source import SPLIT_NAMES, ImageRecord, ImageSource
from transferkit.errors import DataError

UNLABELED = "unlabeled"  # the split of records without a label (label -1)


@dataclass(frozen=True)
class Splits:
    """Indices into `ImageSource.records` for each split.

    `unlabeled` is the pool semi-supervised strategies draw on: train images whose labels a label budget
    hid, and images that came without labels. It is never used for training with labels or for metrics.
    """

    train: list[int]
    val: list[int]
    test: list[int]
    unlabeled: list[int] = field(default_factory=list)

    def items(self) -> list[tuple[str, list[int]]]:
        """The labeled splits."""
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def without(self, dropped: set[int]) -> Splits:
        """The same splits with the records in `dropped` (e.g. unreadable files) left out."""
        train, val, test, unlabeled = (
            [i for i in indices if i not in dropped]
            for indices in (self.train, self.val, self.test, self.unlabeled)
        )
        return Splits(train, val, test, unlabeled)


def make_splits(
    source: ImageSource, val_fraction: float, test_fraction: float, seed: int, keep_together: bool = True
) -> Splits:
    """Assigns every record to a split.

    Records the source placed stay where they are. Unplaced records form the test split when the source
    has none (`test_fraction` of them), and validation is carved out of train when the source has none.
    Both are stratified by label and by the record's stratum; where classes are too small for that
    (more classes than the split has images, or a class of one image), each class keeps an image in
    train. With `keep_together`, records of one `group` stay on one side of each cut.
    """
    by_split: dict[str, list[int]] = {name: [] for name in ("", *SPLIT_NAMES, UNLABELED)}
    for index, record in enumerate(source.records):
        if record.split not in by_split:
            raise DataError(f"Record {record.path} has split {record.split!r}; valid: {SPLIT_NAMES}.")
        by_split[record.split].append(index)
    train, val, test = by_split["train"] + by_split[""], by_split["val"], by_split["test"]
    if not test:
        train, test = stratified_split(
            source, train, test_fraction, seed, key="data.test_fraction", keep_groups=keep_together
        )
    if not val and val_fraction > 0:
        train, val = stratified_split(
            source, train, val_fraction, seed, key="data.val_fraction", keep_groups=keep_together
        )
    return Splits(sorted(train), sorted(val), sorted(test), by_split[UNLABELED])


def apply_label_budget(
    source: ImageSource,
    splits: Splits,
    seed: int,
    per_class: int | None = None,
    fraction: float | None = None,
) -> Splits:
    """Keeps a seeded random subset of each class's labeled images; the rest join the unlabeled pool.

    The budget counts every label a run may learn from or choose with: train and validation together
    (each kept image stays in its split), so a few-label figure rests on no more labels than it says;
    with validation that small, `fit` cross-validates instead (``cv.folds: auto``). `per_class` keeps K
    images of each class (all of a class that has fewer); `fraction` keeps that share of each class, at
    least one image. The test split is untouched, so runs with different budgets are measured on the
    same images, and a smaller budget's images are among a larger one's (same seed).
    """
    if per_class is None and fraction is None:
        return splits
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index in sorted(splits.train + splits.val):
        by_class.setdefault(source.records[index].label, []).append(index)
    train = set(splits.train)
    labeled: set[int] = set()
    for members in by_class.values():
        keep = per_class if per_class is not None else max(1, round((fraction or 0.0) * len(members)))
        order = rng.permutation(members).tolist()
        kept = order[:keep]
        if not train.intersection(kept):  # every kept label fell in validation: one trains instead
            kept[-1] = next((index for index in order if index in train), kept[-1])
        labeled.update(kept)
    hidden = sorted(set(splits.train + splits.val) - labeled)
    return replace(
        splits,
        train=[i for i in splits.train if i in labeled],
        val=[i for i in splits.val if i in labeled],
        unlabeled=sorted(splits.unlabeled + hidden),
    )


def with_unlabeled(source: ImageSource, paths: Sequence[str]) -> ImageSource:
    """The source plus image files that have no label, as records in the unlabeled split (label -1)."""
    extra = [ImageRecord(path, -1, UNLABELED) for path in paths]
    loader = _FilesBesides(source.loader, frozenset(paths)) if source.loader is not None else None
    return replace(source, records=[*source.records, *extra], loader=loader)


@dataclass(frozen=True)
class _FilesBesides:
    """A source's own loader for its records, and plain image decoding for the added files."""

    loader: Callable[[ImageRecord, int], Image.Image]
    files: frozenset[str]

    def __call__(self, record: ImageRecord, channels: int) -> Image.Image:
        if record.path in self.files:
            return decode_image(record.path, channels)
        return self.loader(record, channels)


def stratified_split(
    source: ImageSource,
    indices: Sequence[int],
    fraction: float,
    seed: int,
    *,
    key: str = "fraction",
    keep_groups: bool = False,
) -> tuple[list[int], list[int]]:
    """Splits `indices` into (rest, `fraction` of them), keeping class and stratum proportions, and with
    `keep_groups` each `group` on one side."""
    if not 0 < fraction < 1:
        raise DataError(f"{key} must lie between 0 and 1, got {fraction}.")
    part = math.ceil(fraction * len(indices))
    if part >= len(indices):
        raise DataError(
            f"{len(indices)} image(s) cannot be split with {key}={fraction}: add images, or give the "
            "source its own split (train/ and test/ folders)."
        )
    records = [source.records[i] for i in indices]
    if keep_groups and any(r.group for r in records):
        return split_keeping_groups(records, indices, part, seed, key)
    candidates = ([f"{r.label}/{r.stratum}" for r in records], [str(r.label) for r in records])
    keys = _stratification(candidates, smallest_part=min(part, len(indices) - part))
    if keys is None:
        return _split_keeping_every_class([r.label for r in records], indices, part, seed)
    rest, chosen = sklearn_split(np.asarray(indices), test_size=part, stratify=keys, random_state=seed)
    return rest.tolist(), chosen.tolist()


def _split_keeping_every_class(
    labels: Sequence[int], indices: Sequence[int], part: int, seed: int
) -> tuple[list[int], list[int]]:
    """(rest, `part` of `indices`) at random, where one image of each class stays in the rest while the
    part can be filled without it: a class with no image to train on could not be learnt at all."""
    order = np.random.default_rng(seed).permutation(len(indices)).tolist()
    seen: set[int] = set()
    firsts: list[int] = []
    others: list[int] = []
    for position in order:
        (others if labels[position] in seen else firsts).append(position)
        seen.add(labels[position])
    # the classes' first images fill the part last, and only when the others do not suffice
    chosen = (others + firsts)[:part]
    taken = set(chosen)
    rest = [position for position in order if position not in taken]
    return [indices[i] for i in rest], [indices[i] for i in chosen]


def _stratification(candidates: Sequence[list[str]], smallest_part: int) -> list[str] | None:
    # The finest keys that can be honoured: every stratum needs two members, and each part needs room
    # for one image per stratum. Falls back to coarser keys, then to a random split that keeps every
    # class in the rest.
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
    kept, _ = sklearn_split(np.arange(len(keys)), train_size=size, stratify=stratify, random_state=seed)
    return replace(source, records=[source.records[i] for i in sorted(kept.tolist())])


def class_counts(source: ImageSource, splits: Splits) -> dict[str, dict[str, int]]:
    """Images per class for each split, for reports."""
    counts = {}
    for name, indices in splits.items():
        per_class = Counter(source.records[i].label for i in indices)
        counts[name] = {c: per_class.get(k, 0) for k, c in enumerate(source.class_names)}
    return counts


def sklearn_split(*arrays: Any, **options: Any) -> list[Any]:
    """scikit-learn's `train_test_split`, imported on first use: scikit-learn takes seconds to import,
    and `predict` never splits."""
    from sklearn.model_selection import train_test_split

    return train_test_split(*arrays, **options)
