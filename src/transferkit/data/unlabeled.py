"""Images without labels, for the unlabeled pool: a folder of images or a manifest of paths."""

from __future__ import annotations

from pathlib import Path

from transferkit.data.folder import IMAGE_SUFFIXES, list_images
from transferkit.data.manifest import (
    check_files_exist,
    is_manifest,
    manifest_path_column,
    manifest_paths,
    read_manifest,
)
from transferkit.errors import DataError


def load_unlabeled(spec: str) -> list[str]:
    """Absolute paths of the images in a folder (recursively) or listed in a CSV/JSONL manifest.

    A manifest needs only a ``path`` (or ``file_name``) column; labels and splits in it are ignored.
    Hidden files and folders are skipped. Images are not decoded here.
    """
    if Path(spec).is_dir():
        paths = [str(path.absolute()) for path in list_images(Path(spec))]
    elif is_manifest(spec):
        paths = _manifest_images(Path(spec))
    else:
        raise DataError(
            f"No folder or manifest at {spec}: give a folder of images, or a .csv or .jsonl file "
            f"with a path column."
        )
    if not paths:
        raise DataError(f"No images found in {spec}; image files end in {', '.join(sorted(IMAGE_SUFFIXES))}.")
    return paths


def _manifest_images(manifest: Path) -> list[str]:
    table = read_manifest(manifest)
    paths = manifest_paths(table, manifest_path_column(table, None))
    check_files_exist(manifest, paths)
    return paths
