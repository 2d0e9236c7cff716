"""File hashes: a file is read once per process while it stays the same, and again once it changes."""

import hashlib
import os
from pathlib import Path

from transferkit.files import sha256_of_file


def test_a_file_changed_since_it_was_hashed_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"one")
    assert sha256_of_file(path) == sha256_of_file(str(path)) == hashlib.sha256(b"one").hexdigest()
    modified = os.stat(path).st_mtime_ns
    path.write_bytes(b"two")  # the same size: only the modification time tells
    os.utime(path, ns=(modified + 10**9, modified + 10**9))
    assert sha256_of_file(path) == hashlib.sha256(b"two").hexdigest()
