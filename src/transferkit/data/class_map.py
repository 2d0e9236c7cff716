"""The class map every labelled source shares: names from the training images, checked once."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from transferkit.data.source import ImageSource
from transferkit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


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
    _warn_of_look_alikes(where, names)
    for split in ("val", "test"):
        unknown = sorted(set(labels_by_split.get(split, ())) - set(names))
        if unknown:
            raise DataError(f"{where} has {split} classes {unknown} that {train} lacks; {fix}.")
    return names


def _warn_of_look_alikes(where: str, names: Sequence[str]) -> None:
    """Class names that differ only in case, spaces, hyphens or underscores ("Cat" and "cat ", a typing
    slip in a spreadsheet) are most likely one class split in two: said, not merged."""
    by_form: dict[str, list[str]] = {}
    for name in names:
        by_form.setdefault(re.sub(r"[\s_-]+", "", name.casefold()), []).append(name)
    alike = [group for group in by_form.values() if len(group) > 1]
    if alike:
        logger.warning(
            "%s has classes that differ only in case, spaces or underscores: %s; each is a class of its own. "
            "If they are one, give them one name.",
            where,
            "; ".join(" and ".join(repr(name) for name in group) for group in alike),
        )


def with_class_order(source: ImageSource, order: Sequence[str]) -> ImageSource:
    """The source with its classes in `order` (labels and groupings renumbered), and marked ordered.

    Raises:
        ConfigError: `order` does not name each of the source's classes exactly once.
    """
    names = list(source.class_names)
    missing = [name for name in names if name not in order]
    unknown = [name for name in order if name not in names]
    if missing or unknown or len(order) != len(names):
        raise ConfigError(
            f"Config key 'data.class_order' (--class-order) must name each class of {source.name} once, "
            f"got {list(order)!r}: missing {missing}, unknown {unknown}; the classes are {names}."
        )
    new_index = {old: list(order).index(name) for old, name in enumerate(names)}
    records = [replace(r, label=new_index.get(r.label, r.label)) for r in source.records]  # -1: unlabeled
    groupings = tuple(
        replace(g, group_of_class=tuple(g.group_of_class[names.index(name)] for name in order))
        for g in source.groupings
    )
    return replace(source, class_names=list(order), records=records, groupings=groupings, ordered=True)


def natural_order(names: Sequence[str]) -> list[str]:
    """`names` sorted with their runs of digits compared as numbers: grade_2 before grade_10."""

    def key(name: str) -> tuple[list[str | int], str]:
        parts = re.split(r"(\d+)", name)  # text, digits, text, ...: digits at the odd places
        return [int(part) if place % 2 else part for place, part in enumerate(parts)], name

    return sorted(names, key=key)
