"""Tables that fit an 80-column terminal: a rule under the header and spaces between columns, and file
paths shown from the folder they share, which the command names once below the table (whole, to copy)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich import box
from rich.table import Table

from transferkit import files


def compact_table(title: str, caption: str | None = None, *, tight: bool = False) -> Table:
    """A table without side rules: columns one space apart where `tight`, else two."""
    spacing = {"padding": 0} if tight else {"collapse_padding": True}
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, **spacing)


def common_folder(paths: Sequence[str]) -> str:
    """The folder all `paths` lie in; '' where they share none but the file system's root."""
    folder = files.common_folder(paths)
    return "" if folder == os.path.dirname(folder) else folder


def from_folder(path: str, folder: str) -> str:
    """`path` as seen from `folder` (whole without one)."""
    return os.path.relpath(os.path.abspath(path), folder) if folder else path
