"""One tool's run for `side_by_side.py`, in its own process: train, predict the test split, save the result.

    python benchmarks/side_by_side_tools.py TOOL --settings JSON --out DIR

Writes DIR/result.json (times, split sizes) and, for tools that transferkit does not score itself,
DIR/test_probabilities.npz (labels, probabilities) for the parent to score with the same metrics code.

Every tool but transferkit gets the same inputs: the split transferkit makes for `data.subset` (read
through `transferkit.data`, so all tools see the same images), decoded once with timm's evaluation
resize and centre crop (shorter side to size / crop_pct, bicubic) and kept as uint8, then per image a
random D4 symmetry (a quarter turn, then a mirror with probability 1/2) when augmenting, and
normalization with the weights' mean = std = 0.5. transferkit decodes, augments and normalizes itself.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from transferkit.config import DataConfig
from transferkit.data.load import load_source, split_with_budget
from transferkit.models import resolve_model

MODEL = "efficientnet_lite0"  # the packaged weights: timm's tf_efficientnet_lite0
FROZEN_GROUPS = 3  # the default strategy's frozen lower layer groups (train.strategy.frozen_groups)


@dataclass(frozen=True)
class Settings:
    """What every tool is asked to do; the optimisation settings are transferkit's defaults."""

    subset: int = 600
    epochs: int = 2
    image_size: int = 224
    batch_size: int = 16
    augment: str = "d4"  # d4 or none
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1


@dataclass
class Split:
    """One split decoded: uint8 images (N, 1, S, S) and labels."""

    images: torch.Tensor
    labels: torch.Tensor


def load_splits(settings: Settings) -> dict[str, Split]:
    """train / val / test as transferkit splits `data.subset` images, decoded as timm evaluates."""
    config = DataConfig(subset=settings.subset)
    source = load_source(config)
    splits = split_with_budget(source, config)
    cfg = resolve_model(MODEL, False).preprocessing
    resize = transforms.Compose(
        [
            transforms.Resize(
                math.floor(settings.image_size / cfg.crop_pct),
                interpolation=transforms.InterpolationMode.BICUBIC,
            ),
            transforms.CenterCrop(settings.image_size),
        ]
    )

    def decode(indices: list[int]) -> Split:
        records = [source.records[i] for i in indices]
        pixels = [np.asarray(resize(Image.open(r.path).convert("L"))) for r in records]
        images = torch.from_numpy(np.stack(pixels)).unsqueeze(1)
        return Split(images, torch.tensor([r.label for r in records]))

    return {"train": decode(splits.train), "val": decode(splits.val), "test": decode(splits.test)}


def random_d4(image: torch.Tensor) -> torch.Tensor:
    """One of the 8 symmetries of the square: a random quarter turn, then a random mirror."""
    image = torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))
    return image.flip(-1) if torch.rand(()) < 0.5 else image


class ImageTensors(Dataset[tuple[torch.Tensor, int]]):
    """uint8 grayscale images -> normalized 3-channel float images, with D4 augmentation if asked."""

    def __init__(self, split: Split, augment: bool) -> None:
        self.split, self.augment = split, augment

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.split.images[index]
        if self.augment:
            image = random_d4(image)
        pixels = (image.float() / 255 - 0.5) / 0.5  # the weights' mean = std = 0.5
        return pixels.expand(3, -1, -1), int(self.split.labels[index])


def pretrained_model(num_classes: int, frozen_groups: int = 0) -> nn.Module:
    """The packaged network with a new head; its lowest `frozen_groups` layer groups (transferkit's
    grouping, as the default strategy freezes them) take no gradient."""
    backbone = resolve_model(MODEL, True)
    backbone.reset_head(num_classes)
    for group in backbone.layer_groups()[:frozen_groups]:
        for parameter in group:
            parameter.requires_grad_(False)
    return backbone.model


def keep_batchnorm_statistics(model: nn.Module) -> None:
    """BatchNorm layers normalize with their pretrained running statistics while the rest trains."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 0: the multiplier transferkit's schedule uses."""
    return lambda step: (
        (step + 1) / (warmup + 1)
        if step < warmup
        else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    )


@torch.inference_mode()
def predict(
    model: nn.Module, split: Split, layout: torch.memory_format = torch.contiguous_format
) -> np.ndarray:
    """Softmax probabilities of a split, in batches of 64 images in the given memory layout."""
    model.eval()
    loader = DataLoader(ImageTensors(split, augment=False), batch_size=64)
    return torch.cat([model(x.contiguous(memory_format=layout)).softmax(1) for x, _ in loader]).numpy()


def run_reference(
    settings: Settings, data: dict[str, Split], channels_last: bool = False, frozen: bool = False
) -> tuple[np.ndarray, float]:
    """The plain loop: AdamW, warm-up + cosine per step, label smoothing, a val pass per epoch.

    With `channels_last`, the network and each batch use the channels-last memory layout (two lines),
    as transferkit does; PyTorch's default is NCHW. With `frozen`, the default recipe's network: the
    lowest `FROZEN_GROUPS` layer groups and every BatchNorm statistic frozen, recomputed every step.
    """
    torch.manual_seed(settings.seed)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = pretrained_model(4, FROZEN_GROUPS if frozen else 0).to(memory_format=layout)
    loader = DataLoader(
        ImageTensors(data["train"], settings.augment == "d4"),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=True,
    )
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=settings.weight_decay)
    total = settings.epochs * len(loader)
    schedule = warmup_cosine(total, int(total * settings.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    started = time.perf_counter()
    for _ in range(settings.epochs):
        model.train()
        if frozen:
            keep_batchnorm_statistics(model)
        for images, labels in loader:
            loss = criterion(model(images.contiguous(memory_format=layout)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        val = predict(model, data["val"], layout)
        print(f"val accuracy {(val.argmax(1) == data['val'].labels.numpy()).mean():.3f}", flush=True)
    seconds = time.perf_counter() - started  # the epochs with their val passes; the test pass is not timed
    return predict(model, data["test"], layout), seconds


def run_fastai(
    settings: Settings, data: dict[str, Split], channels_last: bool = False
) -> tuple[np.ndarray, float]:
    """fastai's `vision_learner(...).fine_tune` around the same timm network with the packaged weights.

    `pretrained=False` because fastai would download timm's weights; the packaged ones are loaded into
    its body instead. `freeze_epochs=0`: every layer trains for `epochs` epochs (fastai's one-cycle
    schedule and discriminative rates, base_lr / 100 to base_lr), as the other tools do.
    """
    import fastai.callback.channelslast  # adds Learner.to_channelslast
    import fastai.callback.progress  # adds Learner.no_bar
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fine_tune)
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.torch_core import set_seed
    from fastai.vision.learner import vision_learner

    set_seed(settings.seed)
    dls = DataLoaders(
        DataLoader(
            ImageTensors(data["train"], settings.augment == "d4"),
            batch_size=settings.batch_size,
            shuffle=True,
            drop_last=True,
        ),
        DataLoader(ImageTensors(data["val"], augment=False), batch_size=64),
    )
    loss = CrossEntropyLossFlat(label_smoothing=settings.label_smoothing)
    learn = vision_learner(
        dls, "tf_efficientnet_lite0", pretrained=False, n_out=4, normalize=False, loss_func=loss
    )
    body = {k: v for k, v in pretrained_model(4).state_dict().items() if not k.startswith("classifier.")}
    learn.model[0].model.load_state_dict(body)
    if channels_last:  # fastai's own switch, without its default fp16 mixed precision (no use on a CPU)
        learn.to_channelslast(use_amp=False)
    started = time.perf_counter()
    with learn.no_bar():
        learn.fine_tune(settings.epochs, base_lr=2 * settings.lr, freeze_epochs=0, wd=settings.weight_decay)
    seconds = time.perf_counter() - started  # as the plain loop: the epochs and val passes only
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return predict(learn.model, data["test"], layout), seconds


class TrainerItems(Dataset[dict[str, Any]]):
    def __init__(self, split: Split, augment: bool) -> None:
        self.images = ImageTensors(split, augment)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels, label = self.images[index]
        return {"pixel_values": pixels, "labels": label}


def run_hf_trainer(
    settings: Settings, data: dict[str, Split], channels_last: bool = False
) -> tuple[np.ndarray, float]:
    """Hugging Face `Trainer` on transformers' own timm wrapper (`TimmWrapperForImageClassification`)
    holding the packaged weights: its AdamW, cosine schedule with warm-up, label smoothing and an
    evaluation on the val split per epoch; nothing saved during training. It keeps the last, partial
    training batch, which the other tools drop (at most batch_size - 1 images more per epoch)."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, Trainer, TrainingArguments

    config = TimmWrapperConfig(architecture="tf_efficientnet_lite0")
    config.num_labels = 4  # a property of every config; the class's typed signature leaves it out
    model = TimmWrapperForImageClassification(config)
    model.timm_model.load_state_dict(pretrained_model(4).state_dict())
    if channels_last:  # the weights in channels-last layout; convolutions then keep it for their outputs
        model.timm_model.to(memory_format=torch.channels_last)  # in place, as Module.to is

    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(
            output_dir=folder,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=settings.lr,
            weight_decay=settings.weight_decay,
            lr_scheduler_type="cosine",
            warmup_steps=settings.warmup_fraction,  # a float below 1: a fraction of the steps
            label_smoothing_factor=settings.label_smoothing,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,  # dataloader_drop_last would drop partial eval batches too: kept off
            seed=settings.seed,
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=TrainerItems(data["train"], settings.augment == "d4"),
            eval_dataset=TrainerItems(data["val"], augment=False),
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(TrainerItems(data["test"], augment=False)).predictions
    if isinstance(logits, tuple):  # the logits, then whatever else the output holds
        logits = logits[0]
    return torch.from_numpy(logits).softmax(1).numpy(), seconds


def run_transferkit(settings: Settings, out: Path) -> dict[str, Any]:
    """`transferkit.fit` with the `full` strategy, no test-time views and no decoded-image disk cache,
    so it decodes from the files as the other tools do, and BatchNorm statistics that adapt."""
    import transferkit

    dotted: dict[str, Any] = {"data.subset": settings.subset, "preprocess.tta": False, "data.cache": False}
    run = transferkit.fit(
        data="elpv",
        strategy="full",
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        image_size=settings.image_size,
        augment=settings.augment,
        seed=settings.seed,
        lr=settings.lr,
        out=str(out / "runs"),
        # BatchNorm statistics follow the batches, as in every other tool here
        batchnorm="adapt",
        **dotted,
    )
    return {"train_s": _loop_seconds(run.dir), "headline": run.headline, "run_dir": str(run.dir)}


def run_transferkit_default(settings: Settings, out: Path) -> dict[str, Any]:
    """`transferkit.fit` as a user runs it, on the same images: the default strategy and settings
    (head on frozen features, lowest layer groups and BatchNorm statistics frozen, their activations
    cached, WiSE-FT, test-time views, report and bundle); only the decoded-image disk cache is off, so
    it decodes from the files as the other tools do."""
    import transferkit

    dotted: dict[str, Any] = {"data.subset": settings.subset, "data.cache": False}
    run = transferkit.fit(
        data="elpv",
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        image_size=settings.image_size,
        augment=settings.augment,
        seed=settings.seed,
        lr=settings.lr,
        out=str(out / "runs"),
        **dotted,
    )
    return {"train_s": _loop_seconds(run.dir), "headline": run.headline, "run_dir": str(run.dir)}


def _loop_seconds(run_dir: Path) -> float:
    """The epochs with their validation passes: the sum of `seconds` in the run's metrics.csv."""
    import csv

    with open(run_dir / "metrics.csv", newline="") as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle) if row["seconds"])


TOOLS: dict[str, Callable[[Settings, dict[str, Split]], tuple[np.ndarray, float]]] = {
    "reference": run_reference,
    "reference-channels-last": functools.partial(run_reference, channels_last=True),
    "reference-channels-last-frozen": functools.partial(run_reference, channels_last=True, frozen=True),
    "fastai": run_fastai,
    "fastai-channels-last": functools.partial(run_fastai, channels_last=True),
    "hf-trainer": run_hf_trainer,
    "hf-trainer-channels-last": functools.partial(run_hf_trainer, channels_last=True),
}

TRANSFERKIT: dict[str, Callable[[Settings, Path], dict[str, Any]]] = {
    "transferkit": run_transferkit,
    "transferkit-default": run_transferkit_default,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=[*TOOLS, *TRANSFERKIT])
    parser.add_argument("--settings", type=json.loads, default={})
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(**args.settings)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.tool in TRANSFERKIT:
        result = TRANSFERKIT[args.tool](settings, args.out)
    else:
        data = load_splits(settings)
        probabilities, train_s = TOOLS[args.tool](settings, data)
        labels = data["test"].labels.numpy()
        np.savez(args.out / "test_probabilities.npz", labels=labels, probabilities=probabilities)
        result = {"train_s": train_s}
    result |= {"work_s": time.perf_counter() - started, "settings": asdict(settings)}
    (args.out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
