"""A Hugging Face imagefolder: a folder whose ``metadata.csv`` or ``metadata.jsonl`` lists its images with
their labels, at its top or in each split folder (``train/metadata.csv``, ``test/metadata.csv``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from transferkit.data.folder import split_folders
from transferkit.data.manifest import load_manifest
from transferkit.data.source import ImageSource
from transferkit.errors import DataError

METADATA_FILES = ("metadata.csv", "metadata.jsonl")


def folder_metadata(root: Path) -> dict[str, Path]:
    """The folder's metadata files by split ("" for one at the top); empty for a folder of class folders."""
    top = _metadata_in(root)
    if top is not None:
        return {"": top}
    folders = split_folders(root)
    found = {split: path for split, folder in folders.items() if (path := _metadata_in(folder)) is not None}
    if found and len(found) < len(folders):
        lacking = [f"{folders[split].name}/" for split in folders if split not in found]
        raise DataError(
            f"{root} has metadata files in {[f'{folders[s].name}/' for s in found]} but not in {lacking}: "
            f"list those images in a {METADATA_FILES[0]} of their own too."
        )
    return found


def load_imagefolder(
    root: Path, metadata: dict[str, Path], *, image_column: str | None, label_column: str | None
) -> ImageSource:
    """The images the metadata files list; a split folder's file gives its rows that split."""
    parts = {
        split: load_manifest(path, image_column=image_column, label_column=label_column)
        for split, path in metadata.items()
    }
    if "" in parts:
        return replace(parts[""], name=str(root))
    if "train" not in parts:
        raise DataError(f"{root} has metadata files in {sorted(parts)} but no train/ folder; add one.")
    class_names = parts["train"].class_names
    records = []
    for split, part in parts.items():
        unknown = sorted(set(part.class_names) - set(class_names))
        if unknown:
            raise DataError(
                f"{metadata[split]} has labels {unknown} that {metadata['train']} lacks; add train rows "
                "with them, or remove those rows."
            )
        records += [
            replace(record, label=class_names.index(part.class_names[record.label]), split=split)
            for record in part.records
        ]
    return ImageSource(str(root), class_names, records)


def _metadata_in(folder: Path) -> Path | None:
    return next((folder / name for name in METADATA_FILES if (folder / name).is_file()), None)
