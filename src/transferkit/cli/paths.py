"""How the command line's tables show file paths: from the folder they share, named once below the
table, so that rows fit a terminal and the folder can be copied whole."""

from __future__ import annotations

import os
from collections.abc import Sequence


def common_folder(paths: Sequence[str]) -> str:
    """The folder all `paths` lie in; '' where they share none but the file system's root."""
    if not paths:
        return ""
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(path)) for path in paths])
    except ValueError:  # on different drives
        return ""
    return "" if folder == os.path.dirname(folder) else folder


def from_folder(path: str, folder: str) -> str:
    """`path` as seen from `folder` (whole without one)."""
    return os.path.relpath(os.path.abspath(path), folder) if folder else path
