"""labels.csv as `transferkit label` keeps it, and the labelling session's queue, skip and undo.

The file is a manifest `fit --data labels.csv` reads (``path,label``; paths relative to the file's folder
for images below it, absolute otherwise). It is rewritten whole and atomically after every answer
(temporary file, fsync, rename), so a closed browser or a killed server loses nothing; rows the file
already holds, from earlier rounds or other pools, are kept as they are.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from transferkit.active.paths import image_key, manifest_path
from transferkit.data.manifest import LABEL_COLUMN, manifest_path_column, read_manifest
from transferkit.errors import ConfigError, DataError
from transferkit.files import write_atomic

COLUMNS = ("path", LABEL_COLUMN)


class LabelFile:
    """The rows of labels.csv, keyed by image; every change is written through atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.columns: list[str] = list(COLUMNS)
        self.rows: dict[str, dict[str, str]] = {}  # image key -> row as written; insertion = file order
        if self.path.exists():
            self._read()

    def labels(self) -> dict[str, str]:
        """Image key -> label."""
        return {key: row[LABEL_COLUMN] for key, row in self.rows.items()}

    def set(self, image: str, label: str) -> None:
        """Labels `image` (a new row at the end, or its row relabelled in place) and saves."""
        key = image_key(image)
        row = self.rows.get(key) or {column: "" for column in self.columns}
        row.update({"path": manifest_path(image, self.path), LABEL_COLUMN: label})
        self.rows[key] = row
        self.save()

    def remove(self, image: str) -> None:
        self.rows.pop(image_key(image), None)
        self.save()

    def save(self) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows.values())
        write_atomic(self.path, buffer.getvalue().encode())

    def _read(self) -> None:
        table = read_manifest(self.path)
        path_key = manifest_path_column(table, None)
        if LABEL_COLUMN not in table.columns:
            raise DataError(
                f"{self.path} has no {LABEL_COLUMN!r} column (its columns: {table.columns}); it is not a "
                "labels file. Pass another --out, or move the file away."
            )
        self.columns = ["path", *(c for c in table.columns if c not in (path_key, "path"))]
        folder = self.path.absolute().parent
        for row in table.rows:
            values = {column: str(row.values.get(column, "") or "") for column in table.columns}
            image = str(folder / values.pop(path_key).strip())
            values["path"] = manifest_path(image, self.path)
            self.rows[image_key(image)] = {column: values.get(column, "") for column in self.columns}


@dataclass
class LabellingSession:
    """Images to label in order, with the labels so far; thread-safe (the server answers in threads).

    Attributes:
        images: absolute paths, in the order to show them.
        classes: the label names offered.
        store: labels.csv.
    """

    images: list[str]
    classes: list[str]
    store: LabelFile
    skipped: list[int] = field(default_factory=list)  # this session only: a restart shows them again
    history: list[tuple[str, int]] = field(default_factory=list)  # ("label" | "skip", index)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ConfigError("No classes to label with; name them with --classes a,b,c.")
        repeated = sorted({name for name in self.classes if self.classes.count(name) > 1})
        if repeated:
            raise ConfigError(f"Classes listed twice: {', '.join(repeated)}; list each once in --classes.")
        self._keys = [image_key(image) for image in self.images]

    def label_of(self, index: int) -> str | None:
        return self.store.labels().get(self._keys[index])

    def current(self) -> int | None:
        """The next image to show: the first neither labelled nor skipped in this session."""
        labelled = self.store.labels()
        for index, key in enumerate(self._keys):
            if key not in labelled and index not in self.skipped:
                return index
        return None

    def counts(self) -> dict[str, int]:
        labelled = self.store.labels()
        done = sum(key in labelled for key in self._keys)
        return {"total": len(self.images), "labelled": done, "skipped": len(self.skipped)}

    def label(self, index: int, label: str) -> None:
        """Writes `label` for image `index` to labels.csv before returning."""
        with self.lock:
            self._check_index(index)
            if label not in self.classes:
                raise ConfigError(f"Unknown label {label!r}; the classes are {', '.join(self.classes)}.")
            self.store.set(self.images[index], label)
            if index in self.skipped:
                self.skipped.remove(index)
            self.history.append(("label", index))

    def skip(self, index: int) -> None:
        with self.lock:
            self._check_index(index)
            if index not in self.skipped and self.label_of(index) is None:
                self.skipped.append(index)
                self.history.append(("skip", index))

    def undo(self) -> int | None:
        """Takes back the last answer (after a restart: the last label of these images in the file).

        Returns the image index that was undone, or None when there was nothing to undo.
        """
        with self.lock:
            action, index = self.history.pop() if self.history else ("label", self._last_labelled_in_file())
            if index is None:
                return None
            if action == "label":
                self.store.remove(self.images[index])
            elif index in self.skipped:
                self.skipped.remove(index)
            return index

    def can_undo(self) -> bool:
        return bool(self.history) or self._last_labelled_in_file() is not None

    def _last_labelled_in_file(self) -> int | None:
        position = {key: index for index, key in enumerate(self._keys)}
        ours = [position[key] for key in self.store.rows if key in position]
        return ours[-1] if ours else None

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.images):
            raise DataError(
                f"No image {index}: the pool has {len(self.images)} images (0 to {len(self.images) - 1})."
            )


def resolve_classes(classes: list[str] | None, store: LabelFile) -> list[str]:
    """`classes` as given, else the labels already in labels.csv (sorted)."""
    if classes:
        return classes
    known = sorted(set(store.labels().values()))
    if not known:
        raise ConfigError(
            f"No classes to label with: {store.path} holds no labels yet. "
            "Name them with --classes cat,dog,fox."
        )
    return known
