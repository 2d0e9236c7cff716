"""What one training image costs under each strategy: EfficientNet-Lite0 at 224 px, batches of 16.

The strategies are timed in turns (a few steps each, several rounds, medians), in one process, so a
busy machine slows them alike and the ratios hold. `partial:2` is timed twice: through the frozen
layers and on their cached outputs, without augmentation; the default `fine-tune` twice with D4
augmentation: through its 3 frozen groups, and on their outputs cached once per image and symmetry.

    python benchmarks/epoch_cost.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from contextlib import ExitStack

import torch

from default_fit import RESULTS, _commit, _cpu
from predict_throughput import interleaved_times
from transferkit.config import TrainConfig
from transferkit.data.cache import SplitImages
from transferkit.models import resolve_model
from transferkit.training.features import extract_features
from transferkit.training.module import TransferModule
from transferkit.training.prefix_cache import cached_prefix
from transferkit.training.strategies import create_strategy
from transferkit.transforms.augment import ImageTransform, random_d4

BATCH = 16
IMAGES = 64
EPOCHS = 10  # the run length the modules are built for: enough epochs for D4's 8 views to be cached


def module_for(strategy: str, augment: ImageTransform | None = None) -> TransferModule:
    backbone = resolve_model("efficientnet_lite0", pretrained=True)
    backbone.reset_head(4)
    config = TrainConfig(strategy=strategy, epochs=EPOCHS)
    module = TransferModule(backbone, create_strategy(config), config, augment=augment)
    module.strategy.set_trainable(backbone, epoch=0)
    module.model.train()
    return module


def training_steps(module: TransferModule, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(module.strategy.param_groups(module.backbone))

    def run() -> None:
        for start in range(0, len(images), BATCH):
            loss = module.loss(images[start : start + BATCH], labels[start : start + BATCH], seed=start)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 3, 224, 224), dtype=torch.uint8, generator=generator)
    labels = torch.arange(IMAGES) % 4
    split = SplitImages(images, labels, list(range(IMAGES)))
    with ExitStack() as stack:
        runs: dict[str, Callable[[], object]] = {}
        for name in ("full", "fine-tune", "partial:2"):
            runs[name] = training_steps(module_for(name), images, labels)
        cached = module_for("partial:2")
        data = stack.enter_context(cached_prefix(cached, {"train": split, "val": split}))
        runs["partial:2, cached"] = training_steps(cached, data["train"].images, labels)
        runs["fine-tune, d4"] = training_steps(module_for("fine-tune", random_d4), images, labels)
        cached_views = module_for("fine-tune", random_d4)
        views = stack.enter_context(cached_prefix(cached_views, {"train": split, "val": split}))
        runs["fine-tune, d4, cached views"] = training_steps(cached_views, views["train"].images, labels)
        probe = module_for("linear-probe")
        runs["linear-probe (features)"] = lambda: extract_features(probe.backbone, probe.normalize, images)
        medians = interleaved_times(runs, args.rounds)
    rows = {name: IMAGES / seconds for name, seconds in medians.items()}
    lines = [
        "# Training cost per image by strategy (EfficientNet-Lite0, 224 px, batch 16)",
        "",
        f"Command: `python benchmarks/epoch_cost.py --rounds {args.rounds}` at commit {_commit()}; "
        f"{_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{os.getloadavg()[1]:.1f} (5 min) when written.",
        "Medians of rounds timed in turns; the linear probe's cost is its one pass of feature extraction.",
        "",
        "| strategy | images/s | x full |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {speed:.1f} | {speed / rows['full']:.1f} |" for name, speed in rows.items()]
    (RESULTS / "epoch_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
