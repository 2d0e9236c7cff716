"""A strategy-agnostic LightningModule: the strategy decides what trains, the module runs the steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchvision.transforms import v2

from transferkit.config import TrainConfig
from transferkit.errors import RunError
from transferkit.models.backbone import Backbone
from transferkit.training.auxiliary import AuxiliaryHead
from transferkit.training.inference import run_batched
from transferkit.training.regularizers import Regularizer
from transferkit.training.semi.base import SemiMethod
from transferkit.training.semi.consistency import Consistency
from transferkit.training.strategies.base import FinetuneStrategy
from transferkit.transforms import Normalize
from transferkit.transforms.augment import ImageTransform

Batch = tuple[torch.Tensor, torch.Tensor]


class TransferModule(L.LightningModule):
    """Classifier = normalization + backbone with a new head; optimizer groups come from the strategy.

    Every random draw of a training step (augmentation, mixing, dropout) comes from a generator seeded
    by (seed, epoch, batch), so a resumed run repeats the interrupted one draw for draw.

    Args:
        backbone: the pretrained network with its new head.
        strategy: which parameters train when, at which rates.
        config: the optimisation settings.
        seed: the run's seed.
        class_weights: per-class loss weights for imbalanced data, or None.
        augment: the per-image training augmentation (uint8 in and out), or None.
        semi: what each step learns from the unlabeled pool (the base class: nothing).
        regularizer: what each step adds to the loss (the base class: nothing).
        auxiliary: a second head learning another label of the images, or None; its batches carry
            labels (B, 2), the task's beside the auxiliary one.
    """

    def __init__(
        self,
        backbone: Backbone,
        strategy: FinetuneStrategy,
        config: TrainConfig,
        seed: int = 0,
        class_weights: torch.Tensor | None = None,
        *,
        augment: ImageTransform | None = None,
        semi: SemiMethod | None = None,
        regularizer: Regularizer | None = None,
        auxiliary: AuxiliaryHead | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.normalize: nn.Module = Normalize(backbone.preprocessing)  # cached activations: layout only
        self.strategy = strategy
        self.config = config
        self.seed = seed
        self.augment = augment  # per image, uint8 in and out
        self.semi = semi or SemiMethod()
        self.regularizer = regularizer or Regularizer()
        self.regularizer.bind_backbone(backbone)
        self.auxiliary = auxiliary
        self.criterion = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=config.label_smoothing)
        self.num_classes = int(backbone.head().out_features)  # type: ignore[arg-type]
        self.mix = batch_mixing(config, self.num_classes)
        self._trainable_epoch: int | None = None
        self.consistency: Consistency | None = None  # the pool's figures for the last step

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["semi"] = self.semi.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.semi.load_state_dict(checkpoint.get("semi", {}))

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Here rather than at epoch start: Lightning skips epoch-start hooks when it resumes mid-epoch.
        if self._trainable_epoch != self.current_epoch:
            self.strategy.set_trainable(self.backbone, self.current_epoch)
            self._trainable_epoch = self.current_epoch
        keep_batchnorm_statistics(self.model, everywhere=self.config.batchnorm == "frozen")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(*batch, step_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))
        if not torch.isfinite(loss):
            rate = self.optimizers().param_groups[-1]["lr"]  # type: ignore[union-attr]
            raise RunError(
                f"Loss became {loss.item()} at step {self.global_step} (learning rate {rate:g} at the "
                "top). Lower train.lr; the last checkpoint is intact."
            )
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        if self.consistency is not None:
            for name in ("used", "correct", "known"):
                self.log(
                    f"pool_{name}", float(getattr(self.consistency, name)), on_epoch=True, reduce_fx="sum"
                )
        return loss

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, seed: int, *, augmented: bool = True
    ) -> torch.Tensor:
        """The training loss of one batch of uint8 images, with augmentation (unless not `augmented`) and
        mixing drawn from `seed`."""
        torch.manual_seed(seed)
        labels, aux_targets = labels.unbind(1) if labels.dim() == 2 else (labels, None)
        if augmented and self.augment is not None:
            images = torch.stack([self.augment(image) for image in images])
        inputs = self.normalize(images)
        targets: torch.Tensor = labels
        if self.mix is not None:
            inputs, targets = self.mix(inputs, labels)
        if self.auxiliary is not None and aux_targets is not None:
            features = self.backbone.forward_features(inputs)
            aux_loss = self.auxiliary.loss(features, aux_targets)
            self.log("aux_loss", aux_loss, on_step=False, on_epoch=True)
            loss = self.criterion(self.backbone.head()(features), targets) + aux_loss
        else:
            loss = self.criterion(self.model(inputs), targets)
        penalty = self.regularizer.penalty(self.model)
        if penalty is not None:
            loss = loss + penalty
        self.consistency = self.semi.step_loss(self.model, self.normalize, len(images))
        if self.consistency is not None:
            loss = loss + self.consistency.loss
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), on_epoch=True, prog_bar=False)
        accuracy = (logits.argmax(1) == labels).float().mean()
        self.log("val_accuracy", accuracy, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        groups = self.strategy.param_groups(self.backbone)
        if self.auxiliary is not None:
            groups.append(
                {"params": list(self.auxiliary.parameters()), "lr": self.strategy.lr, "name": "aux"}
            )
        for group in groups:
            decays = self.regularizer.decays(group.get("name", ""))
            group["weight_decay"] = self.config.weight_decay if decays else 0.0
        optimizer: torch.optim.Optimizer
        if self.config.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True)
        else:
            optimizer = adamw(groups)
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


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """A distinct, reproducible seed per training step and process."""
    return (seed * 1_000_003 + epoch * 100_003 + batch * 101 + rank) % (2**63)


def batch_mixing(config: TrainConfig, num_classes: int) -> v2.Transform | None:
    """MixUp and/or CutMix on normalized batches; labels become mixed class probabilities."""
    choices: list[v2.Transform] = []
    if config.mixup > 0:
        choices.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
    if config.cutmix > 0:
        choices.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)


def keep_batchnorm_statistics(model: nn.Module, everywhere: bool = False) -> None:
    """BatchNorm layers that do not train keep their pretrained statistics instead of drifting to the new
    data; with `everywhere`, the trained ones too (their scale and shift still learn).

    Frozen statistics keep the features the head was fitted on when fine-tuning starts, and spare small
    batches the noise of batch statistics; adapted ones follow a new domain's image statistics.
    """
    for layer in model.modules():
        if not isinstance(layer, nn.modules.batchnorm._BatchNorm):
            continue
        params = list(layer.parameters(recurse=False))
        if everywhere or (params and not any(p.requires_grad for p in params)):
            layer.eval()


def warmup_cosine(total_steps: int, warmup: int) -> Any:
    """Linear warm-up to 1, then cosine decay to 0, as a multiplier of each group's rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


FUSED_DEVICES = ("cpu", "cuda")


def adamw(groups: list[dict[str, Any]], **options: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the parameters' device has one: one pass over every tensor
    instead of a dozen small ops per tensor, about 3x faster per step on CPU; the same update up to
    float rounding."""
    devices = {p.device.type for group in groups for p in group["params"]}
    return torch.optim.AdamW(groups, fused=devices <= set(FUSED_DEVICES), **options)
