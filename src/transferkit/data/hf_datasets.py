"""Hugging Face datasets: ``hf:NAME`` from the local cache (or the Hub), or a ``save_to_disk`` folder.

Images live in the dataset's Arrow files, not in image files, so each record's path is a reference,
``<dataset fingerprint>/<split>/<row>``, and the source's loader fetches the row's image. The fingerprint
changes whenever the dataset does, and with it `fingerprint(source)` and the decoded-image cache key.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from transferkit.data.class_map import train_class_names
from transferkit.data.decode import DECODE_ERRORS, decode_image, to_channels
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.data.splits import UNLABELED
from transferkit.errors import DataError, MissingDependencyError

HF_PREFIX = "hf:"
SPLIT_ALIASES = {"train": "train", "validation": "val", "val": "val", "test": "test"}
WHOLE = "all"  # the reference's split part for a saved Dataset that has no splits
NO_LABEL = -1  # how ClassLabel stores a missing label
SAVED_MARKERS = (("dataset_dict.json",), ("dataset_info.json", "state.json"))


def is_saved_dataset(path: str | Path) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return any(all(os.path.isfile(os.path.join(path, name)) for name in marker) for marker in SAVED_MARKERS)


def load_hf_dataset(
    spec: str, *, image_column: str | None = None, label_column: str | None = None
) -> ImageSource:
    """Loads ``hf:NAME``, ``hf:PATH`` or a bare PATH saved with ``save_to_disk`` as an ImageSource.

    Splits named train, validation (or val) and test keep their roles. Rows whose label is missing
    (-1 or None) join the unlabeled pool.

    Args:
        spec: the data spec.
        image_column: the column of images (default: the one column with an `Image` feature).
        label_column: the column of labels (default: the one `ClassLabel` column); a plain column of
            strings or integers works too, its sorted values becoming the class names.

    Raises:
        MissingDependencyError: the `datasets` package is not installed.
        DataError: the dataset cannot be loaded, or its columns or splits do not fit.
    """
    datasets = _import_datasets()
    parts = _parts(spec, _load(datasets, spec))
    features = next(part.rows.features for part in parts if part.split in ("train", ""))
    image_key, label_key = _columns(spec, features, datasets, image_column, label_column)
    labels = {part.name: list(part.rows[label_key]) for part in parts}
    class_label = features[label_key] if isinstance(features[label_key], datasets.ClassLabel) else None
    class_names, to_index = _class_map(spec, parts, labels, class_label)
    records = [
        ImageRecord(f"{part.reference}/{part.name}/{row}", *_label_and_split(value, part.split, to_index))
        for part in parts
        for row, value in enumerate(labels[part.name])
    ]
    unlabeled = sum(record.label == NO_LABEL for record in records)
    notes = [f"{unlabeled} rows of {spec} have no label; they join the unlabeled pool."] if unlabeled else []
    loader = _RowImages(image_key, {part.name: part.rows.select_columns([image_key]) for part in parts})
    return ImageSource(spec, class_names, records, notes=notes, loader=loader)


@dataclass(frozen=True)
class _Part:
    """One split of a Hugging Face dataset."""

    name: str  # the dataset's own split name ("validation"), or WHOLE
    split: str  # transferkit's split ("val"), or "" for a dataset without splits
    rows: Any  # the Dataset, without output formatting
    reference: str  # the dataset's fingerprint, or the spec where it has none


@dataclass
class _RowImages:
    """Opens a record's image from its dataset row (a class, so DataLoader workers can pickle it)."""

    column: str
    splits: Mapping[str, Any]  # HF split name -> Dataset holding only the image column

    def __call__(self, record: ImageRecord, channels: int) -> Image.Image:
        _, split, row = record.path.rsplit("/", 2)
        try:
            value = self.splits[split][int(row)][self.column]
        except DECODE_ERRORS as err:  # `datasets` decodes Image features as it reads the row
            raise DataError(f"Cannot decode image {record.path}: {err}") from err
        return _to_image(value, channels, record.path)


def _to_image(value: object, channels: int, reference: str) -> Image.Image:
    # An Image feature gives a PIL image (EXIF orientation already applied); with decode=False, a dict.
    if isinstance(value, Image.Image):
        return to_channels(value, channels)
    if isinstance(value, dict) and value.get("bytes"):
        return decode_image(io.BytesIO(value["bytes"]), channels, name=reference)
    if isinstance(value, dict) and value.get("path"):
        return decode_image(value["path"], channels)
    raise DataError(f"Row {reference} holds {type(value).__name__} where an image should be.")


def _import_datasets() -> ModuleType:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("datasets", "hf: datasets") from None
    return datasets


def _load(datasets: ModuleType, spec: str) -> Any:
    """The Dataset or DatasetDict behind `spec`; errors from `datasets` become DataErrors."""
    target = spec.removeprefix(HF_PREFIX)
    errors = (OSError, ValueError, ImportError, datasets.exceptions.DatasetsError)
    if is_saved_dataset(target):
        try:
            return datasets.load_from_disk(target)
        except errors as err:
            raise DataError(
                f"Cannot load the saved dataset {target}: {err}. Save it again with save_to_disk."
            ) from err
    with _offline_unless_reachable(datasets) as offline:
        try:
            return datasets.load_dataset(target)
        except errors as err:
            where = (
                "The Hub cannot be reached, so only cached datasets load."
                if offline
                else "The Hub was reachable."
            )
            raise DataError(
                f"Cannot load the Hugging Face dataset {target!r} ({type(err).__name__}: {err}). {where} "
                f"To work offline, save it once where the Hub is reachable, with datasets.load_dataset("
                f"{target!r}).save_to_disk(FOLDER), and give FOLDER (or hf:FOLDER) as the data."
            ) from err


@contextmanager
def _offline_unless_reachable(datasets: ModuleType) -> Iterator[bool]:
    """Loads in offline mode, from the cache and failing at once, when the Hub cannot be reached.

    Without it `datasets` retries the connection for minutes before it gives up.
    """
    from huggingface_hub import constants

    from transferkit.hub import hf_hub_offline

    config = datasets.config
    offline = bool(config.HF_HUB_OFFLINE or getattr(config, "HF_DATASETS_OFFLINE", False)) or hf_hub_offline()
    saved = (config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = offline
    try:
        yield offline
    finally:
        config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _parts(spec: str, loaded: Any) -> list[_Part]:
    """The dataset's splits; a Dataset without splits is left for transferkit to split."""
    if not isinstance(loaded, Mapping):
        return [_part(spec, WHOLE, "", loaded)]
    unknown = sorted(name for name in loaded if name not in SPLIT_ALIASES)
    if unknown:
        raise DataError(
            f"{spec} has splits {unknown} that transferkit cannot place; it knows train, validation "
            f"(or val) and test. Save a DatasetDict with only those splits, renaming or dropping the others."
        )
    ours = [SPLIT_ALIASES[name] for name in loaded]
    if len(set(ours)) < len(ours) or "train" not in ours:
        raise DataError(
            f"{spec} has splits {sorted(loaded)}; it needs a train split, and at most one of val and "
            f"validation."
        )
    return [_part(spec, name, SPLIT_ALIASES[name], dataset) for name, dataset in loaded.items()]


def _part(spec: str, name: str, split: str, dataset: Any) -> _Part:
    # The fingerprint is read first: reformatting the dataset changes it.
    reference = getattr(dataset, "_fingerprint", None) or spec
    return _Part(name, split, dataset.with_format(None), reference)


def _columns(
    spec: str,
    features: Mapping[str, Any],
    datasets: ModuleType,
    image_column: str | None,
    label_column: str | None,
) -> tuple[str, str]:
    """The image and label columns: those chosen, else the one Image and the one ClassLabel column."""
    image_key = _pick_column(spec, features, image_column, datasets.Image, "image_column")
    label_key = _pick_column(spec, features, label_column, datasets.ClassLabel, "label_column")
    if not isinstance(features[image_key], datasets.Image):
        raise DataError(
            f"{spec}: column {image_key!r} is {features[image_key]}, not images. Choose an Image column with "
            f"data.image_column, or cast this one: dataset.cast_column({image_key!r}, datasets.Image())."
        )
    if not _is_label_feature(features[label_key], datasets):
        raise DataError(
            f"{spec}: column {label_key!r} is {features[label_key]}, not labels. Choose a ClassLabel, string "
            f"or integer column with data.label_column."
        )
    return image_key, label_key


def _pick_column(spec: str, features: Mapping[str, Any], chosen: str | None, kind: type, option: str) -> str:
    """`chosen` if it is a column, else the single column whose feature is a `kind`."""
    columns = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    if chosen is not None:
        if chosen not in features:
            raise DataError(
                f"{spec} has no column {chosen!r}; its columns: {columns}. Set data.{option} to one."
            )
        return chosen
    matches = [name for name, feature in features.items() if isinstance(feature, kind)]
    if len(matches) != 1:
        found = (
            f"{len(matches)} {kind.__name__} columns, {matches}" if matches else f"no {kind.__name__} column"
        )
        raise DataError(f"{spec} has {found}; its columns: {columns}. Choose one with data.{option}.")
    return matches[0]


def _is_label_feature(feature: Any, datasets: ModuleType) -> bool:
    if isinstance(feature, datasets.ClassLabel):
        return True
    dtype = str(getattr(feature, "dtype", "")) if isinstance(feature, datasets.Value) else ""
    return dtype.startswith(("int", "uint")) or dtype in ("string", "large_string")


def _class_map(
    spec: str, parts: Sequence[_Part], labels: Mapping[str, Sequence[str | int | None]], class_label: Any
) -> tuple[list[str], Callable[[str | int], int]]:
    """Class names, and how a stored label becomes an index into them."""
    if class_label is not None:  # ClassLabel values are already indices into its names
        if len(class_label.names) < 2:
            raise DataError(
                f"{spec}: the ClassLabel column has classes {class_label.names}; it needs two or more."
            )
        return list(class_label.names), int
    by_split: dict[str, set[str]] = {}
    for part in parts:
        by_split.setdefault(part.split, set()).update(str(v) for v in labels[part.name] if not _missing(v))
    names = train_class_names(
        spec,
        by_split,
        train="its train split",
        fix="add train rows of those classes, or choose another data.label_column",
    )
    index = {name: i for i, name in enumerate(names)}
    return names, lambda value: index[str(value)]


def _label_and_split(
    value: str | int | None, split: str, to_index: Callable[[str | int], int]
) -> tuple[int, str]:
    if value is None or value == NO_LABEL:
        return NO_LABEL, UNLABELED
    return to_index(value), split


def _missing(value: str | int | None) -> bool:
    return value is None or value == NO_LABEL
