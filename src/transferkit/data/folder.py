"""A folder of class subfolders, optionally with train/, val/ and test/ inside."""

from __future__ import annotations

from pathlib import Path

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
    class_names = sorted(layout["train" if split_dirs else ""])
    _check_classes(root, layout, class_names)
    records = [
        ImageRecord(str(path), class_names.index(name), split)
        for split, classes in layout.items()
        for name, paths in sorted(classes.items())
        for path in paths
    ]
    return ImageSource(str(root), class_names, records)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    return {
        d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, d))
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _check_classes(root: Path, layout: dict[str, dict[str, list[Path]]], class_names: list[str]) -> None:
    if len(class_names) < 2:
        raise DataError(f"{root} needs at least two class subfolders with images; found {class_names}.")
    for split, classes in layout.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(f"{root}/{split} has classes {unknown} that train/ lacks; add them to train/.")
        empty = sorted(name for name, paths in classes.items() if not paths and split in ("", "train"))
        if empty:
            raise DataError(f"Class folders {empty} in {root / split} hold no images; fill or remove them.")
