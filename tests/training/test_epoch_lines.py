"""Progress without a terminal: one line per epoch."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from transferkit.training import callbacks
from transferkit.training.callbacks import EpochLines, PhaseProgressBar, progress_bar


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        images, labels = batch
        loss = torch.nn.functional.cross_entropy(self.layer(images), labels)
        self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        images, labels = batch
        accuracy = (self.layer(images).argmax(1) == labels).float().mean()
        self.log("val_accuracy", accuracy, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("redraws", "kind"), [(True, PhaseProgressBar), (False, EpochLines)])
def test_a_redrawn_bar_only_where_stderr_redraws(
    redraws: bool, kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "interactive", lambda: redraws)
    assert type(progress_bar("fine-tune")) is kind


def test_without_a_terminal_each_epoch_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    data = TensorDataset(torch.randn(24, 4), torch.randint(0, 2, (24,)))
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[EpochLines("fine-tune")],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    lines = capsys.readouterr().err.splitlines()
    epochs = [line for line in lines if line.startswith("fine-tune")]
    pattern = r"fine-tune · epoch {}/2: 3 batches in \d+\.\d s, loss \d\.\d{{3}}, val_accuracy \d\.\d{{3}}"
    assert len(epochs) == 2
    for number, line in enumerate(epochs, start=1):
        assert re.fullmatch(pattern.format(number), line), line
