"""A folder of class subfolders, optionally with train/, val/ and test/ inside."""

from __future__ import annotations

from pathlib import Path

from transferkit.data.class_map import train_class_names
from transferkit.data.source import SPLIT_NAMES, ImageRecord, ImageSource
from transferkit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def load_image_folder(root: str | Path) -> ImageSource:
    """Reads ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``; hidden entries are ignored."""
    root = Path(root)
    split_dirs = [root / s for s in SPLIT_NAMES if (root / s).is_dir()]
    if split_dirs and "train" not in {d.name for d in split_dirs}:
        raise DataError(f"{root} has {[d.name for d in split_dirs]} but no train/ folder; add one.")
    layout = {d.name: _class_files(d) for d in split_dirs} if split_dirs else {"": _class_files(root)}
    _check_not_wrapped(root, layout)
    class_names = train_class_names(str(root), layout, train="train/", fix="add them to train/")
    _check_empty_classes(root, layout)
    records = [
        ImageRecord(str(path), class_names.index(name), split)
        for split, classes in layout.items()
        for name, paths in sorted(classes.items())
        for path in paths
    ]
    return ImageSource(str(root), class_names, records)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively and sorted; hidden files and folders are skipped."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, folder)
    )


def _class_files(folder: Path) -> dict[str, list[Path]]:
    return {
        d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
    }


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _check_not_wrapped(root: Path, layout: dict[str, dict[str, list[Path]]]) -> None:
    """A single class folder that holds folders of its own is a wrapper (an unpacked archive's top
    folder): name the folder to pass instead."""
    classes = layout.get("train", layout.get("", {}))
    if len(classes) != 1:
        return
    (name,) = classes
    inner = root / ("train" if "train" in layout else "") / name
    if _class_files(inner):
        raise DataError(
            f"{root} holds one class folder, {name}/, with folders inside: if those are the classes, "
            f"pass --data {inner}."
        )


def _check_empty_classes(root: Path, layout: dict[str, dict[str, list[Path]]]) -> None:
    for split, classes in layout.items():
        empty = sorted(name for name, paths in classes.items() if not paths and split in ("", "train"))
        if empty:
            raise DataError(f"Class folders {empty} in {root / split} hold no images; fill or remove them.")
