"""The class map every labelled source shares: names from the training images, checked once."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from transferkit.errors import DataError


def train_class_names(
    where: str,
    labels_by_split: Mapping[str, Collection[str]],
    *,
    train: str = "train",
    fix: str = "add training images of them",
) -> list[str]:
    """Sorted names of the classes that have training images (split "train" or unassigned, "").

    Validation and test may only use those classes: a model cannot learn a class it never sees, and
    metrics over it would mislead.

    Args:
        where: the source, as messages should name it (a folder, "Manifest labels.csv").
        labels_by_split: the class names found in each split.
        train: how the source calls its training part, for messages ("train/", "its train rows").
        fix: what to do about a class that only val or test has.
    """
    names = sorted({*labels_by_split.get("", ()), *labels_by_split.get("train", ())})
    if len(names) < 2:
        raise DataError(f"{where} needs training images of at least two classes; found {names}.")
    for split in ("val", "test"):
        unknown = sorted(set(labels_by_split.get(split, ())) - set(names))
        if unknown:
            raise DataError(f"{where} has {split} classes {unknown} that {train} lacks; {fix}.")
    return names
