"""Writing files so that a crash leaves the old or the new content, never a mix; hashing them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()  # what open() would give a new file under this process's umask


def write_atomic(path: Path, data: bytes) -> Path:
    """Writes to a temporary file beside `path`, flushes it to disk, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, _NEW_FILE_MODE)  # mkstemp makes files private (0600); outputs are shared
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def sha256_of_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()


def update_with_file(digest: Any, path: str | Path) -> None:
    """Feeds a file into a running hash in blocks, so large files never sit in memory whole."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
