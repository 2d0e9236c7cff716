"""Writing files so that a crash leaves the old or the new content, never a mix; hashing them; the folder
they share."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from transferkit.faults import kill_point


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What open() and mkdir() give under this process's umask; mkstemp and mkdtemp make private ones.
_UMASK = _umask()
_NEW_FILE_MODE = 0o666 & ~_UMASK
_NEW_FOLDER_MODE = 0o777 & ~_UMASK


def write_atomic(path: Path, data: bytes) -> Path:
    """Writes to a temporary file beside `path`, flushes it to disk, then renames it over `path`.

    Raises:
        OSError: the write failed (a full disk, a file size limit); its message names `path`, which keeps
            its previous content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, _NEW_FILE_MODE)  # outputs are shared, like files open() makes
        with os.fdopen(handle, "wb") as stream:
            _write_synced(stream, data)
        kill_point(f"write:{path.name}")  # tests: killed with the new bytes written but not yet in place
        os.replace(temporary, path)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise _failed_write(err, path, "any earlier version of it is left as it was") from err
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_folder_atomic(folder: Path, files: Mapping[str, bytes]) -> Path:
    """Writes files that only make sense together (weights and the config that describes them).

    All of them are written and flushed into a hidden folder beside `folder` first, so a full disk or a
    write error leaves `folder` as it was. Then a new `folder` is that hidden folder renamed, and an
    existing one gets the files by one rename each; files of `folder` not in `files` stay.

    Raises:
        OSError: a write failed; its message names `folder`, whose files are left as they were.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        os.chmod(staging, _NEW_FOLDER_MODE)
        for name, data in files.items():
            with open(staging / name, "wb") as stream:
                _write_synced(stream, data)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise _failed_write(err, folder, "its files are left as they were") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        if folder.exists():
            for name in files:
                os.replace(staging / name, folder / name)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_synced(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)
    stream.flush()
    os.fsync(stream.fileno())  # on disk before the rename makes it visible


def _failed_write(err: OSError, path: Path, kept: str) -> OSError:
    # The same errno (so the same OSError subclass), with the target named: the OS error alone does not.
    message = f"Cannot write {path}: {err.strerror or err}; {kept}"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def cache_root() -> Path:
    """``$TRANSFERKIT_CACHE``, else ``~/.cache/transferkit``: what earlier runs decoded, checked or
    extracted from the same files, kept for the next."""
    return Path(os.environ.get("TRANSFERKIT_CACHE") or Path.home() / ".cache" / "transferkit")


# (path, size, modification time) -> SHA-256: the data check, the copies kept together and a model's
# weights are each hashed once per process, however many steps ask.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes; a file hashed before in this process and unchanged since (the same
    size and modification time) is not read again."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        update_with_file(digest, path)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def update_with_file(digest: Any, path: str | Path) -> None:
    """Feeds a file into a running hash in blocks, so large files never sit in memory whole."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def common_folder(paths: Sequence[str]) -> str:
    """The deepest folder every one of `paths` lies in; '' for no paths, or paths on different drives."""
    folders = [os.path.dirname(os.path.abspath(path)) for path in paths]
    try:
        return os.path.commonpath(folders) if folders else ""
    except ValueError:
        return ""
