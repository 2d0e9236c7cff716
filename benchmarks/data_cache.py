"""Epoch time on ELPV with and without the decoded-image cache, and what the disk cache saves a later run.

Both epochs run the same fine-tuning step as the default (EfficientNet-Lite0 at 224 px, lowest three
layer groups frozen, AdamW, D4 augmentation, batch 16, channels-last); only the input differs:
- cached: uint8 tensors decoded and resized once (what `fit` does);
- decoding: every image opened, decoded, resized and cropped each epoch (an ImageFolder-style pipeline).

    python benchmarks/data_cache.py [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from default_fit import _cpu, _source_state
from transferkit.data import CachedImages, make_splits, resolve_data
from transferkit.data.cache import DiskCache, decode_resized, decode_splits
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.models import Backbone, resolve_model
from transferkit.transforms import Normalize, Preprocessing
from transferkit.transforms.augment import random_d4

RESULTS = Path(__file__).parent / "results"


class DecodingImages(Dataset[tuple[torch.Tensor, int]]):
    """Opens and resizes each image when it is asked for, as a file-backed pipeline does every epoch."""

    def __init__(self, source: ImageSource, indices: list[int], preprocessing: Preprocessing) -> None:
        self.source, self.indices, self.preprocessing = source, indices, preprocessing

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index = self.indices[item]
        image = decode_resized(self.source, [index], self.preprocessing)[0]
        return random_d4(image), self.source.records[index].label


def train_epoch(backbone: Backbone, loader: DataLoader[Any]) -> float:
    """One epoch of the default's fine-tuning step; returns seconds."""
    groups = backbone.layer_groups()
    for group in groups[:3]:
        for parameter in group:
            parameter.requires_grad_(False)
    trainable = [p for group in groups[3:] for p in group]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    normalize = Normalize(backbone.preprocessing)
    model = backbone.model.train().to(memory_format=torch.channels_last)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(normalize(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(*next(iter(loader)))  # warm-up: the first step picks kernels and allocates
    started = time.perf_counter()
    for images, labels in loader:
        step(images, labels)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="train images to use (default: the whole ELPV train split)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    torch.manual_seed(0)
    source = resolve_data("elpv")
    train = make_splits(source, 0.1, 0.25, seed=0).train[: args.limit]
    only_train = Splits(train, [], [])
    backbone = resolve_model("efficientnet_lite0")
    backbone.reset_head(len(source.class_names))
    prep = backbone.preprocessing
    with tempfile.TemporaryDirectory() as folder:
        cache = DiskCache(Path(folder))
        started = time.perf_counter()
        images = decode_splits(source, only_train, prep, cache)["train"]
        decode_cold = time.perf_counter() - started
        started = time.perf_counter()
        decode_splits(source, only_train, prep, cache)
        cache_warm = time.perf_counter() - started
        labels = images.labels.tolist()
        cached = DataLoader(CachedImages(images.images, labels, random_d4), batch_size=16, shuffle=True)
        epoch_cached = train_epoch(backbone, cached)
    decoding = DataLoader(DecodingImages(source, train, prep), batch_size=16, shuffle=True)
    epoch_decoding = train_epoch(backbone, decoding)
    row = {
        "train_images": len(train),
        "decode_and_store_s": round(decode_cold, 1),
        "read_disk_cache_s": round(cache_warm, 2),
        "epoch_cached_s": round(epoch_cached, 1),
        "epoch_decoding_s": round(epoch_decoding, 1),
    }
    command = "python benchmarks/data_cache.py" + (f" --limit {args.limit}" if args.limit else "")
    machine = (
        f"{_cpu()}, torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU; 1-minute load "
        f"average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    write(row, command, machine)
    print((RESULTS / "data_cache.md").read_text())


def write(row: dict[str, float], command: str, machine: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "data_cache.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    (RESULTS / "data_cache.md").write_text(markdown(row, command, machine))


def markdown(row: dict[str, float], command: str, machine: str) -> str:
    extra = row["epoch_decoding_s"] - row["epoch_cached_s"]
    return f"""# Decoded-image cache: epoch time on ELPV with and without it

Command: `{command}` at commit {_source_state()}; {machine}. EfficientNet-Lite0 at 224 px, the
default's fine-tuning step: lowest three layer groups frozen, AdamW, D4 augmentation, batch 16.

| measurement | seconds |
| --- | ---: |
| decode + resize the {row["train_images"]:,} ELPV train images once and store them in the disk cache \
| {row["decode_and_store_s"]} |
| a later run: memory-map the cached train split | {row["read_disk_cache_s"]} |
| one training epoch from the cached uint8 arrays (what `fit` does) | {row["epoch_cached_s"]} |
| one training epoch decoding and resizing every PNG each time (ImageFolder-style) | \
{row["epoch_decoding_s"]} |

Without the cache, every epoch pays the decoding again: {extra:.1f} s \
({extra / row["epoch_cached_s"]:.0%}) more per epoch here. The disk cache also saves the \
{row["decode_and_store_s"]} s first decode in every later run on the same files at the same \
preprocessing. ELPV's PNGs are small (300 x 300, grayscale); larger photos (JPEGs of several \
megapixels) decode far slower, and the saving grows with them.

A DataLoader worker would not help the cached path: the per-item work is a flip or a quarter turn of
a uint8 tensor (microseconds), and on 2 cores a worker process would compete with the training
threads. `train.num_workers` stays configurable (default 0).
"""


if __name__ == "__main__":
    main()
