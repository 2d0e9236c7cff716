"""Step 2: datasets from folders, manifests, Hugging Face and packages, split, decoded once and cached.

The decoded images (`cache`) are torch tensors: those names load their module on first use, so that
reading image files for a prediction imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferkit.data import packaged as _packaged  # noqa: F401  (registers the packaged datasets)
from transferkit.data.decode import decode_image
from transferkit.data.folder import load_image_folder
from transferkit.data.hf_datasets import load_hf_dataset
from transferkit.data.manifest import load_manifest
from transferkit.data.resolve import data_sources, resolve_data
from transferkit.data.source import ImageRecord, ImageSource, fingerprint
from transferkit.data.splits import Splits, class_counts, make_splits, subsample
from transferkit.data.unlabeled import load_unlabeled
from transferkit.lazy import lazy_names

if TYPE_CHECKING:
    from transferkit.data.cache import CachedImages, SplitImages, decode_resized, decode_splits

_CACHE_NAMES = ("CachedImages", "SplitImages", "decode_resized", "decode_splits")

__all__ = [
    "CachedImages",
    "ImageRecord",
    "ImageSource",
    "SplitImages",
    "Splits",
    "class_counts",
    "data_sources",
    "decode_image",
    "decode_resized",
    "decode_splits",
    "fingerprint",
    "load_hf_dataset",
    "load_image_folder",
    "load_manifest",
    "load_unlabeled",
    "make_splits",
    "resolve_data",
    "subsample",
]

__getattr__ = lazy_names(__name__, dict.fromkeys(_CACHE_NAMES, "cache"))
