"""A dataset as a config describes it: the source with its options, then its splits and label budget.

`fit` and `evaluate` both go through here, so a run's splits can be rebuilt exactly from its config.yaml.
"""

from __future__ import annotations

from dataclasses import replace

from transferkit.config import DataConfig
from transferkit.data.class_map import with_class_order
from transferkit.data.groups import with_copies_together
from transferkit.data.resolve import resolve_data
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits, apply_label_budget, make_splits, subsample, with_unlabeled
from transferkit.data.unlabeled import load_unlabeled


def load_source(config: DataConfig) -> ImageSource:
    """The dataset named by `config.name`, with its channel count, subset and unlabeled images applied."""
    source = resolve_data(config.name, image_column=config.image_column, label_column=config.label_column)
    if config.class_order is not None:
        source = with_class_order(source, config.class_order)
    if config.channels:
        source = replace(source, channels=config.channels)
    if config.subset:
        source = subsample(source, config.subset, config.split_seed)
    if config.unlabeled:
        source = with_unlabeled(source, load_unlabeled(config.unlabeled))
    if config.keep_together:
        source = with_copies_together(source)
    return source


def split_with_budget(source: ImageSource, config: DataConfig) -> Splits:
    """Train/val/test, then the label budget: train and validation keep their labeled subset, the rest
    is unlabeled."""
    splits = make_splits(
        source, config.val_fraction, config.test_fraction, config.split_seed, config.keep_together
    )
    return apply_label_budget(
        source, splits, config.split_seed, config.labels_per_class, config.label_fraction
    )
