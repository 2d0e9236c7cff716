"""Training: the LightningModule, its callbacks, and the Trainer factory."""

from transferkit.training.module import TransferModule
from transferkit.training.trainer import create_trainer

__all__ = ["TransferModule", "create_trainer"]
