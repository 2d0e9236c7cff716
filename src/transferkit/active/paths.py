"""How image paths are compared and how manifests list them."""

from __future__ import annotations

import os
from pathlib import Path


def image_key(path: str | os.PathLike[str]) -> str:
    """One name per file however the path is written (relative, absolute, through a link)."""
    return os.path.normcase(os.path.realpath(path))


def manifest_path(path: str | os.PathLike[str], manifest: Path) -> str:
    """`path` as a manifest at `manifest` should list it: relative below its folder, else absolute (the
    manifest reader reads paths relative to the manifest's folder)."""
    image, folder = Path(path).absolute(), manifest.absolute().parent
    try:
        return image.relative_to(folder).as_posix()
    except ValueError:
        return str(image)


def unique_paths(paths: list[str]) -> list[str]:
    """`paths` in order, each file once (its first mention kept)."""
    seen: set[str] = set()
    unique = []
    for path in paths:
        key = image_key(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
