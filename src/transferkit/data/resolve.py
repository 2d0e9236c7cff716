"""Data specs: one parser and one registry, all resolving to an ImageSource."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from transferkit.data.folder import load_image_folder
from transferkit.data.hf_datasets import HF_PREFIX, is_saved_dataset, load_hf_dataset
from transferkit.data.imagefolder import folder_metadata, load_imagefolder
from transferkit.data.manifest import is_manifest, load_manifest
from transferkit.data.source import ImageSource
from transferkit.errors import DataError, UnknownNameError
from transferkit.registry import Registry

DataLoaderFn = Callable[[str], ImageSource]
data_sources: Registry[DataLoaderFn] = Registry("dataset")
logger = logging.getLogger(__name__)


def resolve_data(
    spec: str, *, image_column: str | None = None, label_column: str | None = None
) -> ImageSource:
    """Resolves a data spec to an ImageSource.

    Specs, tried in this order: a packaged dataset (``elpv``, ``elpv:binary``, ``digits``); a Hugging Face
    dataset, ``hf:NAME`` from the local cache or the Hub, or ``hf:PATH`` or a bare PATH saved with
    ``save_to_disk``; a folder with a ``metadata.csv`` or ``.jsonl`` (a Hugging Face imagefolder); a folder
    of class subfolders; a CSV or JSON Lines manifest (``labels.csv``, ``metadata.jsonl``).

    Args:
        spec: the data spec.
        image_column: the column of images (hf:) or image paths (manifests); None picks the default.
        label_column: the column of labels (hf: and manifests); None picks the default.
    """
    columns = {"image_column": image_column, "label_column": label_column}
    if spec in data_sources:
        _refuse_columns(spec, "a packaged dataset", columns)
        return data_sources.get(spec)(spec)
    if spec.startswith(HF_PREFIX) or is_saved_dataset(spec):
        return load_hf_dataset(spec, **columns)
    if Path(spec).is_dir():
        return _load_folder(spec, columns)
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


def _load_folder(spec: str, columns: dict[str, str | None]) -> ImageSource:
    """A Hugging Face imagefolder where a metadata file lists the images, else class subfolders. A
    metadata file that lists no images with labels (a camera's, say) beside class folders is set aside."""
    metadata = folder_metadata(Path(spec))
    if not metadata:
        _refuse_columns(spec, "a folder of class subfolders", columns)
        return load_image_folder(spec)
    try:
        return load_imagefolder(Path(spec), metadata, **columns)
    except DataError as err:
        try:
            source = load_image_folder(spec)
        except DataError:
            raise err from None
        files = ", ".join(str(path) for path in metadata.values())
        logger.warning(
            "%s does not list the images with labels (%s): the class folders are read.", files, err
        )
        return source


def _refuse_columns(spec: str, kind: str, columns: dict[str, str | None]) -> None:
    # A column choice that a source cannot honour would otherwise be ignored without a word.
    chosen = [f"data.{option}" for option, value in columns.items() if value is not None]
    if chosen:
        raise DataError(
            f"{' and '.join(chosen)} apply to hf: datasets and manifests, not to {spec}, {kind}; unset them."
        )
