"""Data sources: one spec parser and one registry, all resolving to an ImageSource."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from transferkit.data.decode import decode_image
from transferkit.data.labels import LabelGrouping
from transferkit.errors import DataError, UnknownNameError
from transferkit.files import update_with_file
from transferkit.registry import Registry

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image.

    Attributes:
        path: file path, or a stable reference for images that live in memory (``digits/0042``).
        label: index into the source's class names.
        split: the split the source assigns it to ("train", "val", "test"), or "" to let transferkit split.
        group: extra stratification key, e.g. ELPV's module type, so splits keep its proportions.
    """

    path: str
    label: int
    split: str = ""
    group: str = ""


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
        loader: how to open one record; files by default.
    """

    name: str
    class_names: list[str]
    records: list[ImageRecord]
    channels: int = 3
    augment: str = "light"
    groupings: tuple[LabelGrouping, ...] = ()
    notes: list[str] = field(default_factory=list)
    loader: Callable[[ImageRecord, int], Image.Image] | None = None

    def open(self, record: ImageRecord) -> Image.Image:
        if self.loader is not None:
            return self.loader(record, self.channels)
        return decode_image(record.path, self.channels)


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


DataLoaderFn = Callable[[str], ImageSource]
data_sources: Registry[DataLoaderFn] = Registry("dataset")


def resolve_data(
    spec: str, *, image_column: str | None = None, label_column: str | None = None
) -> ImageSource:
    """Resolves a data spec to an ImageSource.

    Specs, tried in this order: a packaged dataset (``elpv``, ``elpv:binary``, ``digits``); a Hugging Face
    dataset, ``hf:NAME`` from the local cache or the Hub, or ``hf:PATH`` or a bare PATH saved with
    ``save_to_disk``; a folder of class subfolders; a CSV or JSON Lines manifest (``labels.csv``,
    ``metadata.jsonl``).

    Args:
        spec: the data spec.
        image_column: the column of images (hf:) or image paths (manifests); None picks the default.
        label_column: the column of labels (hf: and manifests); None picks the default.
    """
    from transferkit.data.hf_datasets import HF_PREFIX, is_saved_dataset, load_hf_dataset
    from transferkit.data.manifest import is_manifest, load_manifest

    columns = {"image_column": image_column, "label_column": label_column}
    if spec in data_sources:
        _refuse_columns(spec, "a packaged dataset", columns)
        return data_sources.get(spec)(spec)
    if spec.startswith(HF_PREFIX) or is_saved_dataset(spec):
        return load_hf_dataset(spec, **columns)
    if Path(spec).is_dir():
        from transferkit.data.folder import load_image_folder

        _refuse_columns(spec, "a folder of class subfolders", columns)
        return load_image_folder(spec)
    if is_manifest(spec):
        return load_manifest(spec, **columns)
    if "/" in spec or "\\" in spec:
        raise DataError(
            f"No folder at {spec}: give an existing folder of class subfolders, a .csv or .jsonl manifest, "
            f"hf:NAME for a Hugging Face dataset, or a packaged dataset."
        )
    valid = [
        *data_sources.names(),
        "<folder of class subfolders>",
        "<manifest.csv or .jsonl>",
        "hf:<dataset>",
    ]
    raise UnknownNameError("dataset", spec, valid)


def _refuse_columns(spec: str, kind: str, columns: dict[str, str | None]) -> None:
    # A column choice that a source cannot honour would otherwise be ignored without a word.
    chosen = [f"data.{option}" for option, value in columns.items() if value is not None]
    if chosen:
        raise DataError(
            f"{' and '.join(chosen)} apply to hf: datasets and manifests, not to {spec}, {kind}; unset them."
        )
