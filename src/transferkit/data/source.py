"""The value types every data source resolves to: ImageRecord, ImageSource, and their fingerprint."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from transferkit.data.decode import decode_image
from transferkit.data.labels import LabelGrouping
from transferkit.files import update_with_file

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image.

    Attributes:
        path: file path, or a stable reference for images that live in memory (``digits/0042``).
        label: index into the source's class names.
        split: the split the source assigns it to ("train", "val", "test"), or "" to let transferkit split.
        stratum: extra stratification key, e.g. ELPV's module type, so splits keep its proportions.
        group: images that belong together (e.g. the cells of one solar module): the splits and folds
            transferkit makes never put one group on two sides (``data.keep_together``). "" for none.
        other_labels: further labels of the image as (name, value) pairs, e.g. ELPV's module type:
            what an auxiliary head can learn beside the task (``data.aux_label``).
    """

    path: str
    label: int
    split: str = ""
    stratum: str = ""
    group: str = ""
    other_labels: tuple[tuple[str, str], ...] = ()

    def other_label(self, name: str) -> str | None:
        """The value of the other label `name`, or None when the image has none."""
        return dict(self.other_labels).get(name)


@dataclass
class ImageSource:
    """A labelled image set as a data source describes it.

    Attributes:
        name: the spec it came from.
        class_names: label names, indexed by `ImageRecord.label`.
        records: every image.
        channels: channels the images carry (1 for grayscale sets); the model may want more.
        augment: the augmentation preset that suits the images (e.g. "d4" when orientation is arbitrary).
        groupings: coarser tasks evaluated as well, e.g. ELPV's functional/defective.
        notes: facts for the report, e.g. a published result on this data.
        ordered: the classes are ordered, lowest first (ELPV's defect probabilities): their metrics
            include the mean absolute class error and the quadratic weighted kappa.
        loader: how to open one record; files by default.
    """

    name: str
    class_names: list[str]
    records: list[ImageRecord]
    channels: int = 3
    augment: str = "light"
    groupings: tuple[LabelGrouping, ...] = ()
    notes: list[str] = field(default_factory=list)
    ordered: bool = False
    loader: Callable[[ImageRecord, int], Image.Image] | None = None

    def open(self, record: ImageRecord, resized_to: int | None = None) -> Image.Image:
        """The record's image; a file is decoded no larger than needed for `resized_to` (`decode_image`)."""
        if self.loader is not None:
            return self.loader(record, self.channels)
        return decode_image(record.path, self.channels, resized_to=resized_to)


def fingerprint(source: ImageSource) -> str:
    """SHA-256 over every record's name, label, split and file bytes.

    Names are taken relative to the files' common folder, so the same data hashes the same on any
    machine, and relabelling or moving an image between splits changes the hash.
    """
    digest = hashlib.sha256()
    files = [r.path for r in source.records if Path(r.path).is_file()]
    root = os.path.commonpath(files) if files else ""
    for record in source.records:
        name = os.path.relpath(record.path, root) if root and Path(record.path).is_file() else record.path
        digest.update(f"{name}\t{record.label}\t{record.split}\n".encode())
        if Path(record.path).is_file():
            update_with_file(digest, record.path)
    return digest.hexdigest()
