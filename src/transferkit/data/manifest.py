"""Manifests: a CSV or JSON Lines file listing image paths with their labels and, optionally, splits.

CSV files have a header line, ``path,label[,split][,group]``; JSON Lines files hold one object per line
with the same keys. ``group`` names images that belong together (the cells of one solar module, the
photos of one patient): the splits and folds transferkit makes keep each group on one side.
``file_name`` may name the path column instead, as in the ``metadata.jsonl`` of a Hugging Face
imagefolder; without either, the one column whose every value names an image file is the path column,
and the one column left beside it (split and group aside) the label column. Paths are relative to the
manifest's folder unless absolute. Any other column is a further label of the images, which an
auxiliary head can learn (``data.aux_label``); an empty value means the image has none.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import reprlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transferkit.data.class_map import train_class_names
from transferkit.data.folder import IMAGE_SUFFIXES, split_named
from transferkit.data.source import SPLIT_NAMES, ImageRecord, ImageSource
from transferkit.errors import DataError

MANIFEST_SUFFIXES = (".csv", ".jsonl")
PATH_COLUMNS = ("path", "file_name")  # file_name: the Hugging Face imagefolder convention
LABEL_COLUMN = "label"
SPLIT_COLUMN = "split"
GROUP_COLUMN = "group"  # images that belong together: splits and folds keep a group on one side
SHOWN = 5  # how many bad paths or rows an error message lists

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest, with its line number for error messages (a CSV row's last line)."""

    line: int
    values: dict[str, object]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: its file, its columns (a CSV's header, every key of a JSONL file) and rows."""

    path: Path
    columns: list[str]
    rows: list[ManifestRow]


@dataclass(frozen=True)
class _Entry:
    path: str
    label: str
    split: str
    group: str
    other_labels: tuple[tuple[str, str], ...]


def is_manifest(spec: str | Path) -> bool:
    """Whether `spec` names a manifest by its suffix (the file need not exist)."""
    return Path(spec).suffix.lower() in MANIFEST_SUFFIXES


def load_manifest(
    manifest: str | Path, *, image_column: str | None = None, label_column: str | None = None
) -> ImageSource:
    """Reads a labelled manifest; the class names are the sorted labels of its train rows.

    Args:
        manifest: a ``.csv`` or ``.jsonl`` file.
        image_column: the path column (default: ``path``, else ``file_name``, else the one column of
            image file names).
        label_column: the label column (default: ``label``, else the one other column). Labels may be
            strings or integers.

    Raises:
        DataError: the file cannot be parsed, a column or value is missing or invalid, listed files do
            not exist, an image is listed twice, or val/test rows use labels that no train row has.
    """
    table = read_manifest(Path(manifest))
    path_key = manifest_path_column(table, image_column)
    label_key = manifest_label_column(table, label_column, path_key)
    if not table.rows:
        raise DataError(
            f"Manifest {manifest} lists no images; add one row per image with its path and label."
        )
    other_keys = [c for c in table.columns if c not in {path_key, label_key, SPLIT_COLUMN, GROUP_COLUMN}]
    entries = [_entry(table, row, path_key, label_key, other_keys) for row in table.rows]
    check_files_exist(table.path, [entry.path for entry in entries])
    _check_no_duplicates(table.path, [entry.path for entry in entries])
    class_names = train_class_names(
        f"Manifest {manifest}",
        _labels_by_split(entries),
        train="the train split",
        fix="add train rows with those labels, or remove the rows",
    )
    index = {name: i for i, name in enumerate(class_names)}
    records = [
        ImageRecord(
            entry.path, index[entry.label], entry.split, group=entry.group, other_labels=entry.other_labels
        )
        for entry in entries
    ]
    return ImageSource(str(manifest), class_names, records)


def read_manifest(manifest: Path) -> Manifest:
    """Parses a CSV or JSON Lines manifest; blank lines are skipped."""
    if not manifest.is_file():
        raise DataError(f"No manifest at {manifest}: give an existing .csv or .jsonl file.")
    text = _read_text(manifest)
    if manifest.suffix.lower() == ".jsonl":
        rows = _parse_jsonl(manifest, text)
        return Manifest(manifest, sorted({key for row in rows for key in row.values}), rows)
    return _parse_csv(manifest, text)


def manifest_path_column(manifest: Manifest, chosen: str | None) -> str:
    """The column holding image paths: `chosen`, else ``path``, else ``file_name``, else the one column
    whose every value ends in an image suffix."""
    if chosen is not None:
        _require_column(manifest, chosen, "image_column")
        return chosen
    found = next((name for name in PATH_COLUMNS if name in manifest.columns), None)
    if found is not None:
        return found
    if any(Path(column).suffix.lower() in IMAGE_SUFFIXES for column in manifest.columns):
        raise DataError(
            f"Manifest {manifest.path} starts with a row of data, {manifest.columns}, where a header line "
            f"belongs; add one such as path,label,split as its first line."
        )
    named_images = [column for column in manifest.columns if _names_images(manifest, column)]
    if len(named_images) == 1:
        logger.info("Manifest %s: the image paths are column %r.", manifest.path, named_images[0])
        return named_images[0]
    raise DataError(
        f"Manifest {manifest.path} has no path column; its columns are {manifest.columns}. Name the "
        f"column of image paths 'path', or pass --image-column COLUMN (data.image_column)."
    )


def manifest_label_column(manifest: Manifest, chosen: str | None, path_key: str) -> str:
    """The column holding labels: `chosen`, else ``label``, else the one column left beside the paths,
    the split and the group."""
    if chosen is not None:
        _require_column(manifest, chosen, "label_column")
        return chosen
    if LABEL_COLUMN in manifest.columns:
        return LABEL_COLUMN
    others = [c for c in manifest.columns if c not in {path_key, SPLIT_COLUMN, GROUP_COLUMN}]
    if len(others) == 1:
        logger.info("Manifest %s: the labels are column %r.", manifest.path, others[0])
        return others[0]
    raise DataError(
        f"Manifest {manifest.path} has no 'label' column; its columns are {manifest.columns}. Name the "
        f"column of labels 'label', or pass --label-column COLUMN (data.label_column)."
    )


def _names_images(manifest: Manifest, column: str) -> bool:
    values = [row.values.get(column) for row in manifest.rows]
    return bool(values) and all(
        isinstance(value, str) and Path(value.strip()).suffix.lower() in IMAGE_SUFFIXES for value in values
    )


def manifest_paths(manifest: Manifest, path_key: str) -> list[str]:
    """The rows' image paths, made absolute against the manifest's folder."""
    return [_path(manifest, row, path_key) for row in manifest.rows]


def check_files_exist(manifest: Path, paths: Sequence[str]) -> None:
    """Raises a DataError naming the first few listed paths that are not files (images are not decoded)."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise DataError(
            f"Manifest {manifest} lists {len(missing)} file(s) that do not exist, e.g. {missing[:SHOWN]}. "
            f"Relative paths are read from the manifest's folder, {manifest.absolute().parent}; "
            f"fix the paths or remove those rows."
        )


def _read_text(manifest: Path) -> str:
    try:
        return manifest.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often prepend a BOM
    except UnicodeDecodeError as err:
        raise DataError(f"Manifest {manifest} is not UTF-8 text ({err}); save it as UTF-8.") from err
    except OSError as err:
        raise DataError(f"Cannot read manifest {manifest}: {err}.") from err


def _parse_csv(manifest: Path, text: str) -> Manifest:
    reader = csv.reader(io.StringIO(text, newline=""))
    non_blank = (values for values in reader if any(value.strip() for value in values))
    try:
        header = [column.strip() for column in next(non_blank, [])]
        rows = [
            ManifestRow(reader.line_num, dict(zip(header, (value.strip() for value in values), strict=False)))
            for values in non_blank
        ]
    except csv.Error as err:
        raise DataError(
            f"Manifest {manifest} is not valid CSV near line {reader.line_num} ({err}); "
            f"quote values that hold commas, quotes or line breaks."
        ) from err
    if not any(header):
        raise DataError(
            f"Manifest {manifest} is empty; write a header line path,label[,split] and one row per image."
        )
    return Manifest(manifest, header, rows)


def _parse_jsonl(manifest: Path, text: str) -> list[ManifestRow]:
    rows = []
    # Newlines only: str.splitlines would also break on U+2028 and kin, which JSON strings may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rows.append(ManifestRow(number, _parse_json_object(manifest, number, line)))
    return rows


def _parse_json_object(manifest: Path, number: int, line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested arrays
        raise DataError(
            f"Manifest {manifest} line {number} is not valid JSON ({err}); write one JSON object per line."
        ) from err
    if not isinstance(value, dict):
        raise DataError(
            f"Manifest {manifest} line {number} holds a JSON {type(value).__name__}, not an object; "
            f'write one object per line, like {{"path": "cat/1.png", "label": "cat"}}.'
        )
    return value


def _require_column(manifest: Manifest, column: str, option: str) -> None:
    if column not in manifest.columns:
        raise DataError(
            f"Manifest {manifest.path} has no column {column!r}; its columns are {manifest.columns}. "
            f"Add the column, or name the one to use with --{option.replace('_', '-')} (data.{option})."
        )


def _entry(
    manifest: Manifest, row: ManifestRow, path_key: str, label_key: str, other_keys: list[str]
) -> _Entry:
    return _Entry(
        _path(manifest, row, path_key),
        _label(manifest.path, row, label_key),
        _split(manifest.path, row),
        _group(row),
        _other_labels(row, other_keys),
    )


def _other_labels(row: ManifestRow, keys: list[str]) -> tuple[tuple[str, str], ...]:
    """The row's values in the other columns, as text; empty ones left out (the image has none)."""
    values = ((key, row.values.get(key)) for key in keys)
    return tuple(
        (key, str(value).strip()) for key, value in values if value is not None and str(value).strip()
    )


def _path(manifest: Manifest, row: ManifestRow, key: str) -> str:
    value = row.values.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"Manifest {manifest.path} line {row.line}: {key} is {reprlib.repr(value)}; "
            f"give the image's path as text."
        )
    folder = manifest.path.absolute().parent
    path = folder / value.strip()  # an absolute value replaces the folder
    if "\\" in value and os.sep == "/" and not path.exists():  # a manifest written on Windows
        written_on_windows = folder / value.strip().replace("\\", "/")
        path = written_on_windows if written_on_windows.exists() else path
    return str(path)


def _label(manifest: Path, row: ManifestRow, key: str) -> str:
    value = row.values.get(key)
    # bool is an int subclass, but True is no class name.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise DataError(
        f"Manifest {manifest} line {row.line}: {key} is {reprlib.repr(value)}; "
        f"give each row a label as text or an integer."
    )


def _split(manifest: Path, row: ManifestRow) -> str:
    value = row.values.get(SPLIT_COLUMN)
    split = value.strip() if isinstance(value, str) else value
    if split is None or split == "":
        return ""
    canonical = split_named(str(split))
    if canonical is not None:  # valid, validation, Test: the names splits go by
        return canonical
    raise DataError(
        f"Manifest {manifest} line {row.line}: split is {reprlib.repr(value)}; use one of "
        f"{', '.join(SPLIT_NAMES)}, or leave it empty to let transferkit split."
    )


def _check_no_duplicates(manifest: Path, paths: Sequence[str]) -> None:
    # An image listed twice could land in train and test at once and inflate the test score.
    repeated = [path for path, count in Counter(paths).items() if count > 1]
    if repeated:
        raise DataError(
            f"Manifest {manifest} lists {len(repeated)} image(s) more than once, e.g. {repeated[:SHOWN]}; "
            f"keep one row per image."
        )


def _group(row: ManifestRow) -> str:
    value = row.values.get(GROUP_COLUMN)
    return "" if value is None else str(value).strip()


def _labels_by_split(entries: Iterable[_Entry]) -> dict[str, set[str]]:
    by_split: dict[str, set[str]] = {}
    for entry in entries:
        by_split.setdefault(entry.split, set()).add(entry.label)
    return by_split
