"""The model that scores the pool: a fitted run's network, or a pretrained model for a cold start.

Features go through `rank`'s feature cache (`ranking.cached_features`), so a second `suggest` on the same
pool with the same model reads them from disk. A run's class probabilities come from those same pooled
features through its linear head, tempered with its calibration temperature: one forward pass gives
both. (The run's test-time views are not averaged here; uncertainty of the plain image is what matters.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit.config import ModelConfig
from transferkit.data.cache import DiskCache, decode_splits
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.errors import ConfigError, ModelError
from transferkit.evaluation.calibration import tempered_probabilities
from transferkit.export.predictor import bundle_channels, bundle_temperature, read_bundle_config
from transferkit.models import Backbone, resolve_model
from transferkit.models.ensemble import Ensemble
from transferkit.models.runs import load_run
from transferkit.models.saved import find_bundle
from transferkit.ranking.feature_cache import FeatureCache, cached_features
from transferkit.transforms import Normalize

COLD_START_MODEL = "efficientnet_lite0"  # the packaged default of `fit`


@dataclass
class Scorer:
    """A backbone and, for a fitted run, what turns its features into calibrated probabilities.

    Attributes:
        spec: what the user named (a run directory, or a model spec).
        backbone: the network; its head is the run's classifier (unused for a cold start).
        channels: channels images are decoded to (the run's, else 3).
        label_names: the run's classes; None for a cold start (no probabilities).
        temperature: the run's calibration temperature.
    """

    spec: str
    backbone: Backbone
    channels: int
    label_names: list[str] | None = None
    temperature: float = 1.0

    @property
    def fitted(self) -> bool:
        return self.label_names is not None


def load_scorer(run: str | os.PathLike[str] | None, model: str | None, image_size: int | None) -> Scorer:
    """A fitted run's model, or `model` (default: the packaged EfficientNet-Lite0) for a cold start."""
    if run is not None and model is not None:
        raise ConfigError(
            f"Both a run ({run}) and --model {model} were given: a run scores the pool with its own model. "
            "Drop --model, or drop the run for a cold start."
        )
    if run is None:
        backbone = resolve_model(model or COLD_START_MODEL)
        if image_size:
            backbone.preprocessing = backbone.preprocessing.resized(image_size)
        return Scorer(backbone.spec, backbone, channels=3)
    if image_size:
        raise ConfigError(
            f"--image-size applies to a cold start; the run {run} reads images at its own size. Drop it."
        )
    return _run_scorer(Path(run))


def _run_scorer(run: Path) -> Scorer:
    bundle = find_bundle(run)
    config = read_bundle_config(bundle)
    backbone = load_run(str(bundle), ModelConfig(f"run:{bundle}"))
    if isinstance(backbone.model, Ensemble):
        raise ModelError(
            f"{run} is an ensemble of {len(backbone.model.members)} fold models (cv.final: ensemble), which "
            "share no feature space to measure diversity in. Suggest with a run fitted with cv.final: refit."
        )
    if not isinstance(backbone.head(), nn.Linear):
        raise ModelError(
            f"{run}: the model's head is not one linear layer; suggest cannot read its features."
        )
    channels = bundle_channels(config, bundle) or backbone.preprocessing.channels
    return Scorer(str(run), backbone, channels, config["label_names"], bundle_temperature(config, bundle))


def pool_features(
    scorer: Scorer, source: ImageSource, indices: list[int], batch_size: int, cache: bool
) -> np.ndarray:
    """Pooled features of `source.records[indices]`, (N, D) float32; decoded images and features cached."""
    preprocessing = scorer.backbone.preprocessing
    decoded = decode_splits(
        source, Splits(indices, [], []), preprocessing, DiskCache.default() if cache else None
    )
    feature_cache = FeatureCache.default() if cache else None
    normalize = Normalize(preprocessing)
    images = decoded["train"].images
    return cached_features(scorer.backbone, normalize, images, feature_cache, batch_size).features.numpy()


def class_probabilities(scorer: Scorer, features: np.ndarray) -> np.ndarray | None:
    """softmax(head(features) / temperature), (N, C); None for a cold start."""
    if not scorer.fitted:
        return None
    head = scorer.backbone.head()
    device = next(head.parameters()).device  # features come back on the CPU, the head may not
    with torch.no_grad():
        logits = head(torch.from_numpy(features).to(device)).float().cpu().numpy()
    return tempered_probabilities(logits, scorer.temperature)
