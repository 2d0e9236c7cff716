"""Frozen-backbone features on disk, so a second `rank` or a linear probe of the same model skips the
forward pass.

A file is named by a SHA-256 over the network's weights (without its head: pre-logit features do not
depend on it), the preprocessing and the decoded images' bytes. Hashing the weights in memory, not a
weights file, also covers random-init networks and models adapted after loading.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from transferkit.data.cache import DiskCache
from transferkit.files import write_atomic
from transferkit.models.backbone import Backbone
from transferkit.progress import progress_task
from transferkit.training.features import feature_network, run_in_batches

_CACHE_FORMAT = 2  # bump when feature extraction changes, so old files are not reused


@dataclass(frozen=True)
class CachedFeatures:
    """Features with the speed they were computed at.

    Attributes:
        features: pooled pre-logit features, (N, num_features).
        images_per_second: the fastest full batch of the extraction (this run's or the one that filled
            the cache), the first batch left out as warm-up; with fewer than two full batches, one more
            pass of the first batch. None for no images.
        from_cache: True when nothing had to be computed (a cache hit, or no images).
    """

    features: torch.Tensor
    images_per_second: float | None
    from_cache: bool


@dataclass(frozen=True)
class FeatureCache:
    """Feature matrices as ``<key>.safetensors``, written atomically beside the decoded-image cache."""

    root: Path

    @classmethod
    def default(cls) -> FeatureCache:
        """``$TRANSFERKIT_CACHE/features``, else ``~/.cache/transferkit/features``."""
        return cls(DiskCache.default().root.parent / "features")

    def load(self, key: str) -> CachedFeatures | None:
        path = self.root / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as handle:
                speed = (handle.metadata() or {}).get("images_per_second")
                features = handle.get_tensor("features")
        except (OSError, SafetensorError, KeyError):  # damaged: the caller extracts again and replaces it
            return None
        return CachedFeatures(features, float(speed) if speed else None, from_cache=True)

    def store(self, key: str, extracted: CachedFeatures) -> None:
        speed = extracted.images_per_second
        metadata = {"images_per_second": repr(speed)} if speed else None
        data = save({"features": extracted.features.contiguous()}, metadata=metadata)
        write_atomic(self.root / f"{key}.safetensors", data)


def features_key(backbone: Backbone, images: torch.Tensor) -> str:
    """SHA-256 over the format, architecture, preprocessing, body weights and uint8 images (N, C, H, W)."""
    described: dict[str, Any] = {
        "format": _CACHE_FORMAT,
        "family": backbone.family,
        "architecture": backbone.architecture,
        "preprocessing": backbone.preprocessing.to_dict(),
        "images": [list(images.shape), str(images.dtype)],
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    update_with_body_weights(digest, backbone)
    digest.update(_as_bytes(images))
    return digest.hexdigest()


def update_with_body_weights(digest: Any, backbone: Backbone) -> None:
    """Feeds every parameter and buffer except the head's into `digest`, by name."""
    head = {param.data_ptr() for param in backbone.head().parameters()}
    for name, tensor in backbone.model.state_dict().items():
        if tensor.numel() and tensor.data_ptr() in head:
            continue
        digest.update(name.encode())
        digest.update(_as_bytes(tensor))


def _as_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype, bfloat16 too
    return np.ascontiguousarray(flat.numpy()).data


def cached_features(
    backbone: Backbone,
    normalize: nn.Module,
    images: torch.Tensor,
    cache: FeatureCache | None,
    batch_size: int = 64,
) -> CachedFeatures:
    """Pooled pre-logit features of uint8 images (N, C, H, W), from `cache` when it holds them."""
    if not len(images):
        return CachedFeatures(torch.empty(0, backbone.num_features), None, from_cache=True)
    key = features_key(backbone, images) if cache is not None else ""
    hit = cache.load(key) if cache is not None else None
    if hit is not None:
        return hit
    with (
        feature_network(backbone, normalize, images.numel()) as run,
        progress_task(f"features: {backbone.spec}, {len(images)} images", len(images)) as advance,
    ):
        clock = BatchClock(batch_size, advance)
        features = run_in_batches(run, images, batch_size, clock)
        speed = clock.images_per_second() or timed_batch(run, images[:batch_size])
    extracted = CachedFeatures(features, speed, from_cache=False)
    if cache is not None:
        cache.store(key, extracted)
    return extracted


def timed_batch(run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> float:
    """Images per second of one more pass of `batch` through `run`, which has run once already (so the
    translation, allocation and kernel selection are behind it)."""
    started = time.perf_counter()
    run(batch)
    return len(batch) / (time.perf_counter() - started)


class BatchClock:
    """A progress callback that also times each batch, as the interval since the previous one ended."""

    def __init__(self, batch_size: int, advance: Callable[[int], None]) -> None:
        self.batch_size = batch_size
        self.advance = advance
        self.durations: list[tuple[int, float]] = []
        self._last = time.perf_counter()

    def __call__(self, images: int) -> None:
        now = time.perf_counter()
        self.durations.append((images, now - self._last))
        self._last = now
        self.advance(images)

    def images_per_second(self) -> float | None:
        """Full batches only, after the first (allocation and kernel selection); the fastest, because
        other work on the machine only ever slows a batch down."""
        full = [seconds for images, seconds in self.durations[1:] if images == self.batch_size]
        return self.batch_size / min(full) if full else None
