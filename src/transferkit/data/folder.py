"""A folder of class subfolders, optionally with train/, val/ and test/ inside."""

from __future__ import annotations

import logging
from pathlib import Path

from transferkit.data.class_map import train_class_names
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
# The names splits go by, as folders or in a manifest's split column (any case): Kaggle and Roboflow
# exports use valid/, Hugging Face validation.
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}

logger = logging.getLogger(__name__)


def load_image_folder(root: str | Path) -> ImageSource:
    """Reads ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``; hidden entries are ignored."""
    root = Path(root)
    split_dirs = split_folders(root)
    if _split_names_are_classes(root, split_dirs):
        split_dirs = {}
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{root} has {[d.name for d in split_dirs.values()]} but no train/ folder; add one.")
    folders = split_dirs or {"": root}
    layout = {split: _class_files(folder) for split, folder in folders.items()}
    notes = _unlabeled_splits(folders, layout) + _left_beside(root, split_dirs)
    _check_not_wrapped(root, folders, layout)
    class_names = train_class_names(str(root), layout, train="train/", fix="add them to train/")
    _check_empty_classes(folders, layout)
    records = [
        ImageRecord(str(path), class_names.index(name), split)
        for split, classes in layout.items()
        for name, paths in sorted(classes.items())
        for path in paths
    ]
    return ImageSource(str(root), class_names, records, notes=notes)


def split_named(name: str) -> str | None:
    """The split a folder or a manifest's split value names ("Validation" is "val"); None for none."""
    return next((split for split, aliases in SPLIT_ALIASES.items() if name.lower() in aliases), None)


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders directly in `root`, by split (``valid/`` as "val"); two for one split stop."""
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_named(folder.name)
        if split is not None:
            found.setdefault(split, []).append(folder)
    for split, folders in found.items():
        if len(folders) > 1:
            raise DataError(
                f"{root} has {len(folders)} {split} folders, {[f.name for f in folders]}; keep one."
            )
    return {split: found[split][0] for split in SPLIT_ALIASES if split in found}  # train, val, test


def _split_names_are_classes(root: Path, split_dirs: dict[str, Path]) -> bool:
    """Folders named like splits that hold images but no folders, beside other folders of images, are
    classes: a class called train beside bus/ and car/."""
    if not split_dirs or any(_subfolders(folder) for folder in split_dirs.values()):
        return False
    named = set(split_dirs.values())
    return any(list_images(folder) for folder in _subfolders(root) if folder not in named)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively and sorted; hidden files and folders are skipped."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, folder)
    )


def _subfolders(folder: Path) -> list[Path]:
    """The folders directly in `folder`, sorted; hidden ones are skipped."""
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def _class_files(folder: Path) -> dict[str, list[Path]]:
    return {d.name: list_images(d) for d in _subfolders(folder)}


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _left_beside(root: Path, split_dirs: dict[str, Path]) -> list[str]:
    """Folders of images beside the split folders are not read: said in the log and the report."""
    if not split_dirs:
        return []
    kept = set(split_dirs.values())
    beside = {folder.name: len(list_images(folder)) for folder in _subfolders(root) if folder not in kept}
    shown = [f"{name}/ ({count} images)" for name, count in beside.items() if count]
    if not shown:
        return []
    splits = ", ".join(f"{d.name}/" for d in split_dirs.values())
    return [_noted(f"Left out: {', '.join(shown)} in {root}; only the split folders {splits} are read.")]


def _unlabeled_splits(folders: dict[str, Path], layout: dict[str, dict[str, list[Path]]]) -> list[str]:
    """Images outside every class folder have no label. Beside class folders, and in a val/ or test/
    folder without any (a competition's unlabeled test set), they are left out, and said; in train/ or
    a folder without class folders they stop, saying how to label them."""
    notes = []
    for split, folder in folders.items():
        loose = [
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ]
        if not loose:
            continue
        if layout[split]:
            notes.append(
                _noted(f"Left out: {len(loose)} images directly in {folder}, outside every class folder.")
            )
        elif split in ("val", "test"):
            notes.append(
                _noted(
                    f"Left out: {folder} holds {len(loose)} images without class folders, so without labels; "
                    f"the {split} split is drawn from train/ instead (transferkit predict labels them)."
                )
            )
        else:
            raise DataError(
                f"{folder} holds {len(loose)} images but no class subfolders: put each class's images in "
                "a subfolder named after it, or list them with their labels in a manifest (a CSV with a "
                "header line path,label, or metadata.csv in the folder, as a Hugging Face imagefolder)."
            )
    return notes


def _noted(note: str) -> str:
    logger.warning(note)
    return note


def _check_not_wrapped(
    root: Path, folders: dict[str, Path], layout: dict[str, dict[str, list[Path]]]
) -> None:
    """A single class folder that holds folders of its own is a wrapper (an unpacked archive's top
    folder): name the folder to pass instead."""
    split = "train" if "train" in layout else ""
    if len(layout[split]) != 1:
        return
    (name,) = layout[split]
    inner = folders[split] / name
    if _subfolders(inner):
        raise DataError(
            f"{root} holds one class folder, {name}/, with folders inside: if those are the classes, "
            f"pass --data {inner}."
        )


def _check_empty_classes(folders: dict[str, Path], layout: dict[str, dict[str, list[Path]]]) -> None:
    for split, classes in layout.items():
        empty = sorted(name for name, paths in classes.items() if not paths and split in ("", "train"))
        if empty:
            raise DataError(f"Class folders {empty} in {folders[split]} hold no images; fill or remove them.")
