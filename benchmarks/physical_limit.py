"""The default model against the machine's limit: FLOPs per image, achieved FLOP/s, fraction of peak.

BENCHMARKS.md section 3. For the packaged EfficientNet-Lite0 (timm's tf_efficientnet_lite0, 4-class
head) at `--image-size` px:

- FLOPs per image of the forward pass and of forward + backward (every layer trains), counted with
  `torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions; elementwise work is not counted);
- achieved FLOP/s of a plain training step (batch 16, cross-entropy, AdamW, full backward) and of
  inference (batch 64, no grad), each the median of `--repeats` timed calls after a warm-up, with
  the network and images in PyTorch's default NCHW layout and in channels-last;
- the same for transferkit's own training step (`TransferModule.loss`: D4 augmentation, normalization
  to channels-last, label smoothing) with the `full` strategy and with the default `fine-tune` strategy,
  whose lowest three layer groups are frozen (its FLOPs are counted on that step, not assumed);
- the machine's peak: a float32 matmul of `--matmul-size` squared, timed in the same process before and
  after the model measurements; the peak is the median of all of them.

One process, so every figure shares the same threads and the same machine state.

    python benchmarks/physical_limit.py            # quick: about 2 minutes on a 2-core CPU
    python benchmarks/physical_limit.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from default_fit import RESULTS, _source_state, write_csv
from transferkit.config import TrainConfig
from transferkit.models import Backbone, resolve_model
from transferkit.training.module import TransferModule
from transferkit.training.strategies import create_strategy
from transferkit.transforms.augment import random_d4

MODEL = "efficientnet_lite0"
NUM_CLASSES = 4  # ELPV's classes; the head's size barely changes the FLOPs
TRAIN_BATCH = 16
INFER_BATCH = 64
LAYOUTS = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}


def conv_backward_flops(  # aten.convolution_backward's arguments, as shapes
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: object,
    _stride: object,
    _padding: object,
    _dilation: object,
    transposed: bool,
    _output_padding: object,
    _groups: int,
    output_mask: list[bool],
    **_: object,
) -> int:
    """FLOPs of a convolution's backward: the forward's once per gradient it computes (input, weight;
    the bias gradient, the mask's third entry, is a sum and not counted).

    torch 2.14's own formula drops `groups` from the weight gradient, so it counts a depthwise
    convolution's weight gradient `channels` times over (pull request pytorch/pytorch#183405 changes
    that upstream).
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def counted_flops(work: Callable[[], object], corrected: bool = True) -> int:
    """FLOPs of one call of `work` as FlopCounterMode counts them, with grouped convolutions' backward
    corrected (see `conv_backward_flops`) unless `corrected` is False."""
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops} if corrected else {}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        work()
    return int(counter.get_total_flops())


def median_seconds(work: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `work` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_flops_per_s(size: int, repeats: int) -> list[float]:
    """Achieved FLOP/s of `size` x `size` float32 matmuls, one figure per timed call."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - started))
    return rates


def fresh_backbone() -> Backbone:
    backbone = resolve_model(MODEL, True)
    backbone.reset_head(NUM_CLASSES)
    return backbone


def plain_train_step(
    image_size: int, memory_format: torch.memory_format
) -> tuple[Callable[[], object], Callable[[], object]]:
    """A training step as a plain PyTorch loop writes it; returns (step, two-image forward+backward)."""
    model = fresh_backbone().model.train().to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(TRAIN_BATCH, 3, image_size, image_size).contiguous(memory_format=memory_format)
    labels = torch.randint(NUM_CLASSES, (TRAIN_BATCH,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def two_images() -> None:  # BatchNorm in training mode needs more than one image
        loss = torch.nn.functional.cross_entropy(model(images[:2]), labels[:2])
        loss.backward()
        model.zero_grad()

    return step, two_images


def transferkit_train_step(strategy_name: str, image_size: int) -> Callable[[], object]:
    """transferkit's training step (the LightningModule's loss, then AdamW) for one strategy's epoch 1."""
    backbone = fresh_backbone()
    config = TrainConfig(strategy=strategy_name)
    strategy = create_strategy(config)
    module = TransferModule(backbone, strategy, config, augment=random_d4).train()
    optimizer = torch.optim.AdamW(strategy.param_groups(backbone))
    images = torch.randint(0, 256, (TRAIN_BATCH, 1, image_size, image_size), dtype=torch.uint8)
    labels = torch.randint(NUM_CLASSES, (TRAIN_BATCH,))
    module.on_train_batch_start((images, labels), 0)  # trainable groups and BatchNorm modes, as in training

    def step() -> None:
        loss = module.loss(images, labels, seed=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def inference(
    image_size: int, memory_format: torch.memory_format
) -> tuple[Callable[[], object], Callable[[], object]]:
    """Batched inference without gradients; returns (batch call, one-image forward)."""
    model = fresh_backbone().model.eval().to(memory_format=memory_format)
    images = torch.randn(INFER_BATCH, 3, image_size, image_size).contiguous(memory_format=memory_format)

    def batch() -> None:
        with torch.inference_mode():
            model(images)

    def one_image() -> None:
        with torch.no_grad():
            model(images[:1])

    return batch, one_image


@dataclass(frozen=True)
class Workload:
    """A timed call and how to count its FLOPs per image."""

    name: str
    batch: int  # images per timed call
    work: Callable[[], object]
    counted: Callable[[], object]  # the call whose FLOPs are counted
    counted_images: int  # images in that call


def workloads(image_size: int) -> list[Workload]:
    """Plain inference and training in PyTorch's default (NCHW) and channels-last memory formats, then
    transferkit's training step (channels-last, as its normalization returns)."""
    paths = []
    for layout, memory_format in LAYOUTS.items():
        infer, infer_one = inference(image_size, memory_format)
        name = f"inference, batch 64, no grad, {layout}"
        paths.append(Workload(name, INFER_BATCH, infer, infer_one, 1))
    for layout, memory_format in LAYOUTS.items():
        step, step_two = plain_train_step(image_size, memory_format)
        name = f"plain training step, batch 16, AdamW, full backward, {layout}"
        paths.append(Workload(name, TRAIN_BATCH, step, step_two, 2))
    for name in ("full", "fine-tune"):
        tk_step = transferkit_train_step(name, image_size)
        label = f"transferkit training step, strategy {name}, batch 16"
        paths.append(Workload(label, TRAIN_BATCH, tk_step, tk_step, TRAIN_BATCH))
    return paths


def measure(image_size: int, repeats: int, matmul_size: int) -> tuple[list[dict[str, object]], float]:
    """Rows of (path, FLOPs per image, images/s, achieved FLOP/s) and the measured peak FLOP/s."""
    peak_rates = matmul_flops_per_s(matmul_size, repeats)
    rows = []
    for path in workloads(image_size):
        flops_per_image = counted_flops(path.counted) / path.counted_images
        seconds = median_seconds(path.work, repeats)
        rows.append(
            {
                "path": path.name,
                "gflop_per_image": flops_per_image / 1e9,
                "gflop_per_image_torch_formula": counted_flops(path.counted, corrected=False)
                / path.counted_images
                / 1e9,
                "images_per_s": path.batch / seconds,
                "achieved_gflop_per_s": flops_per_image * path.batch / seconds / 1e9,
            }
        )
        print(rows[-1], flush=True)
    peak_rates += matmul_flops_per_s(matmul_size, repeats)
    peak = statistics.median(peak_rates)
    for row in rows:
        row["fraction_of_peak"] = row["achieved_gflop_per_s"] * 1e9 / peak  # type: ignore[operator]
    return rows, peak


def machine_line(peak: float, matmul_size: int) -> str:
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); 1-minute load average {os.getloadavg()[0]:.2f} at the end. "
        f"Peak: {peak / 1e9:.1f} GFLOP/s, the median float32 {matmul_size} x {matmul_size} matmul."
    )


def write_results(rows: list[dict[str, object]], command: str, machine: str, image_size: int) -> None:
    write_csv("physical_limit", rows)
    lines = [
        f"# EfficientNet-Lite0 at {image_size} px against the machine's peak",
        "",
        f"Command: `{command}` at commit {_source_state()}",
        "",
        machine,
        "",
        "| path | GFLOP / image | images/s | achieved GFLOP/s | fraction of peak |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['path']} | {r['gflop_per_image']:.3f} | {r['images_per_s']:.1f} | "
        f"{r['achieved_gflop_per_s']:.1f} | {r['fraction_of_peak']:.1%} |"
        for r in rows
    ]
    lines += [
        "",
        "FLOPs: `FlopCounterMode` counts matmuls and convolutions (a multiply-add is 2 FLOPs);",
        "normalization, activations and the optimizer's elementwise updates are not counted, so the",
        "fractions are a lower bound on how busy the cores are. Depthwise convolutions, most of",
        "EfficientNet's layers, do few FLOPs per byte moved and cannot reach a matmul's rate.",
        "",
        "Backward FLOPs: torch's own formula for `convolution_backward` ignores `groups`, which counts",
        "a depthwise convolution's weight gradient once per channel (pytorch/pytorch#183405 proposes",
        "the fix upstream); the script registers the corrected formula (each gradient costs the",
        "forward's FLOPs).",
        "Uncorrected, torch would report "
        + ", ".join(f"{r['gflop_per_image_torch_formula']:.2f}" for r in rows)
        + " GFLOP per image for the rows above.",
        "",
    ]
    (RESULTS / "physical_limit.md").write_text("\n".join(lines))
    plot(rows, RESULTS / "physical_limit.png")


def plot(rows: list[dict[str, object]], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5), dpi=110)
    axes = figure.add_subplot()
    names = [str(r["path"]) for r in rows]
    axes.barh(names, [float(r["fraction_of_peak"]) for r in rows], color="#2a7")  # type: ignore[arg-type]
    axes.invert_yaxis()
    axes.set_xlabel("fraction of the measured float32 matmul peak")
    axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=8, help="timed calls per path (median)")
    parser.add_argument("--matmul-size", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows, peak = measure(args.image_size, args.repeats, args.matmul_size)
    command = (
        f"python benchmarks/physical_limit.py --image-size {args.image_size} --repeats {args.repeats} "
        f"--matmul-size {args.matmul_size}"
    )
    write_results(rows, command, machine_line(peak, args.matmul_size), args.image_size)
    print((RESULTS / "physical_limit.md").read_text())


if __name__ == "__main__":
    main()
