"""ONNX translations of bundles that hold no current model.onnx, kept on disk for the next load.

`load(backend="auto")` on a CPU translates such a bundle's network to ONNX in memory and keeps it once it
matches PyTorch on the first images (`CheckedPixelModel`). Translating needs timm and torch's exporter,
seconds of start-up that a bundle with its own model.onnx never pays; keeping the checked graph under
``$TRANSFERKIT_CACHE/translations``, keyed by the bundle's config.json and weights (and the versions of
what made the graph), makes every later load of the same bundle start as fast as one that has it. The
bundle itself is never written to, and a cache that cannot be written only costs the next load its start.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from transferkit.errors import ModelError
from transferkit.export.onnx_runtime import OnnxPixelModel
from transferkit.files import cache_root, update_with_file, write_atomic

logger = logging.getLogger(__name__)

TRANSLATION_FORMAT = b"transferkit translation 1"
MAX_BYTES = 2 << 30  # translations kept in all, the most recently used first
BUNDLE_FILES = ("config.json", "model.safetensors")  # what the network and its preprocessing are
MADE_BY = ("transferkit", "torch", "timm", "onnxruntime")  # what builds, translates and runs the graph


@dataclass(frozen=True)
class CachedTranslation:
    """Where the checked ONNX translation of one bundle's network lives: ``<root>/<key>.onnx``, the key a
    SHA-256 of the bundle's config.json and weights and of the versions that make the graph (`MADE_BY`)."""

    path: Path

    @classmethod
    def of_bundle(cls, bundle: Path, root: Path | None = None) -> CachedTranslation | None:
        """Where `bundle`'s translation is kept; None without onnxruntime to run one, or without the
        bundle's files (loading its weights then says what is missing)."""
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        # a graph translated and checked by other versions is not reused: their network or exporter differ
        digest = hashlib.sha256(TRANSLATION_FORMAT + " ".join(map(_version, MADE_BY)).encode())
        try:
            for name in BUNDLE_FILES:
                update_with_file(digest, bundle / name)
        except OSError:
            return None
        return cls((root or cache_root() / "translations") / f"{digest.hexdigest()}.onnx")

    def load(self) -> OnnxPixelModel | None:
        """The kept translation, or None when there is none (or it cannot be read: it is removed)."""
        if not self.path.is_file():
            return None
        try:
            model = OnnxPixelModel(self.path)
        except ModelError as err:
            logger.warning("%s; translating the bundle again", err)
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # a cache shared with other users may not be ours to touch
            os.utime(self.path)  # recently used: kept the longest
        return model

    def store(self, serialized: bytes) -> None:
        """Keeps `serialized`, then drops the least recently used translations beyond `MAX_BYTES`. A cache
        that cannot be written costs the next load its translation, nothing else: a warning."""
        try:
            write_atomic(self.path, serialized)
            prune(self.path.parent, keep=self.path)
        except OSError as err:
            logger.warning("the ONNX translation is not kept for the next load: %s", err)


def prune(root: Path, keep: Path, max_bytes: int = MAX_BYTES) -> None:
    """Removes the least recently used translations in `root` until they hold at most `max_bytes`;
    `keep` stays whatever its size."""
    kept = []
    for path in root.glob("*.onnx"):
        with contextlib.suppress(FileNotFoundError):  # another process may be removing it
            kept.append((path.stat(), path))
    total = 0
    for stat, path in sorted(kept, key=lambda item: item[0].st_mtime, reverse=True):
        total += stat.st_size
        if total > max_bytes and path != keep:
            path.unlink(missing_ok=True)


def _version(package: str) -> str:
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"{package} none"
