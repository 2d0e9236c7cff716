"""A strategy-agnostic LightningModule: the strategy decides what trains, the module runs the steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from transferkit.config import TrainConfig
from transferkit.models.backbone import Backbone
from transferkit.strategies.base import FinetuneStrategy
from transferkit.training.inference import run_batched
from transferkit.transforms import Normalize
from transferkit.transforms.augment import ImageTransform

Batch = tuple[torch.Tensor, torch.Tensor]


class TransferModule(L.LightningModule):
    """Classifier = normalization + backbone with a new head; optimizer groups come from the strategy."""

    def __init__(self, backbone: Backbone, strategy: FinetuneStrategy, config: TrainConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.normalize = Normalize(backbone.preprocessing)
        self.strategy = strategy
        self.config = config
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def on_train_epoch_start(self) -> None:
        keep_frozen_batchnorm_in_eval(self.model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.criterion(self(images), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Loss became {loss.item()} at step {self.global_step} (learning rates "
                f"{[g['lr'] for g in self.optimizers().param_groups][-1]:g} at the top). "  # type: ignore[union-attr]
                "Lower train.lr; the last checkpoint is intact."
            )
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), on_epoch=True, prog_bar=False)
        accuracy = (logits.argmax(1) == labels).float().mean()
        self.log("val_accuracy", accuracy, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.strategy.param_groups(self.backbone), weight_decay=self.config.weight_decay
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(total, warmup=int(total * self.config.warmup_fraction))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def predict_proba(
        self, images: torch.Tensor, views: Sequence[ImageTransform], batch_size: int = 64
    ) -> torch.Tensor:
        """Class probabilities of uint8 images (N, C, H, W), averaged over test-time `views`; (N, classes)."""

        def averaged(batch: torch.Tensor) -> torch.Tensor:
            return torch.stack([self(view(batch)).float().softmax(1) for view in views]).mean(0)

        return run_batched(self, averaged, images, batch_size)

    def predict_logits(
        self, images: torch.Tensor, views: Sequence[ImageTransform], batch_size: int = 64
    ) -> torch.Tensor:
        """Logits of uint8 images (N >= 1, C, H, W) under each test-time view, float32 (views, N, classes).

        What calibration needs: the temperature divides each view's logits before their softmaxes
        are averaged, as the exported predictor does.
        """

        def per_view(batch: torch.Tensor) -> torch.Tensor:
            return torch.stack([self(view(batch)).float() for view in views], dim=1)

        return run_batched(self, per_view, images, batch_size).transpose(0, 1)


def keep_frozen_batchnorm_in_eval(model: nn.Module) -> None:
    """Frozen BatchNorm layers keep their pretrained statistics instead of drifting to the new data."""
    for layer in model.modules():
        params = list(layer.parameters(recurse=False))
        if (
            isinstance(layer, nn.modules.batchnorm._BatchNorm)
            and params
            and not any(p.requires_grad for p in params)
        ):
            layer.eval()


def warmup_cosine(total_steps: int, warmup: int) -> Any:
    """Linear warm-up to 1, then cosine decay to 0, as a multiplier of each group's rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
