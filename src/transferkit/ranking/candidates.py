"""One candidate model, loaded as `fit` would load it, reduced to what the scores need."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.config import CROP_SETTINGS, ModelConfig
from transferkit.data.cache import DiskCache, decode_splits
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.errors import ConfigError
from transferkit.models import Backbone, parse_model_spec, resolve_model
from transferkit.ranking.feature_cache import FeatureCache, cached_features
from transferkit.training.inference import run_batched
from transferkit.transforms import Normalize


@dataclass(frozen=True)
class Candidate:
    """A model to rank: a model spec, with its pretrained weights or randomly initialised."""

    spec: str
    pretrained: bool = True

    @property
    def label(self) -> str:
        return self.spec if self.pretrained else f"{self.spec} (random init)"


@dataclass(frozen=True)
class RankSettings:
    """How every candidate is read: the same images, size and batch size for all of them."""

    image_size: int | None = None  # None: the size each model's weights expect
    batch_size: int = 64
    cache: bool = True  # decoded images and features on disk between runs
    seed: int = 0  # random-init candidates are the networks `fit` builds with this seed
    crop: str = "auto"  # preprocess.crop, as fit takes it
    crop_pct: float | None = None  # preprocess.crop_pct, as fit takes it
    elongation: float | None = None  # the median train image's long side over its short side

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16 px or None, got {self.image_size}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.crop not in CROP_SETTINGS:
            raise ConfigError(f"crop must be one of {', '.join(CROP_SETTINGS)}, got {self.crop!r}.")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1] or None, got {self.crop_pct}.")


@dataclass(frozen=True)
class CandidateFeatures:
    """A candidate's features on the training (and validation) images, with its size and speed.

    Attributes:
        train, val: pooled pre-logit features, (N, D); val is empty when no validation split was read.
        source_logits: the source head's logits on the training images, (N, Z); None without a source head.
        parameters: parameters of the network without its source head (the head is replaced to fine-tune).
        images_per_second: forward passes per second on this machine at batch `RankSettings.batch_size`,
            timed during feature extraction (through the pooled features; the linear head adds little).
        extraction_s: wall time spent computing features now (0 when all came from the cache).
        features_cached: True when every feature came from the cache.
    """

    candidate: Candidate
    architecture: str
    train: torch.Tensor
    val: torch.Tensor
    source_logits: torch.Tensor | None
    parameters: int
    images_per_second: float
    extraction_s: float
    features_cached: bool


def resolve_candidates(models: list[str | ModelConfig | Candidate]) -> list[Candidate]:
    """Candidates from specs or model configs; every spec is parsed before any model loads."""
    if not models:
        raise ConfigError("No models to rank; pass at least one model spec, e.g. efficientnet_lite0.")
    candidates = [_as_candidate(model) for model in models]
    for candidate in candidates:
        parse_model_spec(candidate.spec)  # a typo fails now, with the closest names, not after hours
    labels = [candidate.label for candidate in candidates]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"Models listed twice: {', '.join(repeated)}. List each candidate once.")
    return candidates


def _as_candidate(model: str | ModelConfig | Candidate) -> Candidate:
    if isinstance(model, Candidate):
        return model
    if isinstance(model, ModelConfig):
        if model.arch or model.weights:
            raise ConfigError(
                f"{model.name}: rank takes model specs without arch or weights; use a run: or timm folder."
            )
        return Candidate(model.name, model.pretrained)
    return Candidate(model)


def load_candidate(
    candidate: Candidate, source: ImageSource, splits: Splits, settings: RankSettings
) -> CandidateFeatures:
    """Loads the model as `fit` does, decodes the images at its size, and extracts (or reuses) features."""
    torch.manual_seed(settings.seed)  # fit seeds before building the model: the same random init
    backbone = resolve_model(candidate.spec, candidate.pretrained)
    backbone.adapt_input_channels(source.channels)
    backbone.preprocessing = backbone.preprocessing.with_crop(
        settings.crop, settings.elongation, settings.crop_pct
    )
    if settings.image_size:
        backbone.preprocessing = backbone.preprocessing.resized(settings.image_size)
    images = decode_splits(
        source, splits, backbone.preprocessing, DiskCache.default() if settings.cache else None
    )
    normalize = Normalize(backbone.preprocessing)
    cache = FeatureCache.default() if settings.cache else None
    started = time.perf_counter()
    train = cached_features(backbone, normalize, images["train"].images, cache, settings.batch_size)
    val = cached_features(backbone, normalize, images["val"].images, cache, settings.batch_size)
    cached = train.from_cache and val.from_cache
    extraction = 0.0 if cached else time.perf_counter() - started
    speed = train.images_per_second or math.nan  # None only for a cache entry without a timed batch
    return CandidateFeatures(
        candidate,
        backbone.architecture,
        train.features,
        val.features,
        source_head_logits(backbone, train.features),
        body_parameters(backbone),
        speed,
        extraction,
        cached,
    )


def source_head_logits(backbone: Backbone, features: torch.Tensor) -> torch.Tensor | None:
    """The model's own class logits, from its pre-logit features and the head it came with.

    Pre-logit features followed by the linear head are exactly the forward pass in inference mode, so
    no second pass over the images is needed. Models whose head is not one linear layer get None.
    """
    head = backbone.head()
    if not isinstance(head, nn.Linear) or head.out_features < 2:
        return None
    return run_batched(backbone.model, head, features, batch_size=4096)


def body_parameters(backbone: Backbone) -> int:
    head = {id(param) for param in backbone.head().parameters()}
    return sum(param.numel() for param in backbone.model.parameters() if id(param) not in head)
