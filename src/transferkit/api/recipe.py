"""What one model's training needs, shared by the final model and every cross-validation fold."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transferkit.config import FitConfig
from transferkit.data import ImageSource
from transferkit.data.cache import SplitImages
from transferkit.export.predictor import Classifier
from transferkit.models import Backbone, resolve_model
from transferkit.run_dir import RunPaths
from transferkit.training.balance import class_weights, resolve_balance
from transferkit.training.loop import TrainingPlan, TrainingResult, run_phases
from transferkit.training.methods import Methods
from transferkit.training.module import TransferModule
from transferkit.training.strategies import FinetuneStrategy
from transferkit.transforms.augment import AugmentPreset, identity


def build_backbone(config: FitConfig, source: ImageSource, strategy: FinetuneStrategy) -> Backbone:
    """The pretrained model with a new head for the source's classes, adapted by the strategy, at the
    configured input size."""
    model = config.model
    backbone = resolve_model(model.name, model.pretrained, model.arch, model.weights)
    backbone.reset_head(len(source.class_names))
    backbone.adapt_input_channels(source.channels)
    strategy.adapt(backbone)
    if config.preprocess.image_size:
        backbone.preprocessing = backbone.preprocessing.resized(config.preprocess.image_size)
    return backbone


@dataclass(frozen=True)
class Recipe:
    """The resolved config, its methods, the data source and the augmentation of a run."""

    config: FitConfig
    methods: Methods
    source: ImageSource
    augment: AugmentPreset

    def backbone(self) -> Backbone:
        """A fresh pretrained model to train (one per cross-validation fold)."""
        return build_backbone(self.config, self.source, self.methods.strategy)

    def train(
        self,
        backbone: Backbone,
        data: dict[str, SplitImages],
        paths: RunPaths,
        *,
        resume: bool,
        writes: bool = True,
    ) -> TrainingResult:
        """Trains `backbone` on ``data["train"]`` (validating on ``data["val"]``), writing into `paths`;
        leaves it in its plain, exportable form."""
        config, methods = self.config, self.methods
        train_counts = torch.bincount(data["train"].labels, minlength=len(self.source.class_names)).tolist()
        balance = resolve_balance(config.train.balance, train_counts)
        module = TransferModule(
            backbone,
            methods.strategy,
            config.train,
            config.seed,
            class_weights(train_counts) if balance == "weights" else None,
            augment=self.augment.train,
            semi=methods.semi,
            regularizer=methods.regularizer,
        )
        plan = TrainingPlan(data, paths, config.runtime, balance == "sampler", train_counts, writes)
        training = run_phases(module, plan, resume=resume)
        methods.strategy.finalize(backbone)
        return training

    def classifier(self, backbone: Backbone) -> Classifier:
        """The trained network as `load` will return it, with the run's test-time views (uncalibrated)."""
        views = self.augment.tta_views if self.config.preprocess.tta else (identity,)
        return Classifier.from_network(
            backbone.model,
            self.source.class_names,
            backbone.preprocessing,
            views=views,
            data_channels=self.source.channels,
        )
