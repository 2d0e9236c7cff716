"""The default fine-tune's training step with and without explicit padding, by image size.

EfficientNet-Lite0's last stages run 5x5 depthwise convolutions on maps of size/32 and size/16: at
96 px a 3x3 map, smaller than the kernel, where PyTorch's CPU backward pass is slow unless the zeros
are added before the convolution (`transferkit.training.padding`). Both variants are timed in turns
in one process (medians of rounds), on the same images, so a busy machine slows them alike.

    python benchmarks/small_maps.py --rounds 5
"""

from __future__ import annotations

import argparse
import os

import torch

from default_fit import RESULTS, _commit, _cpu, write_csv
from epoch_cost import module_for, training_steps
from predict_throughput import interleaved_times
from transferkit.training.padding import explicit_padding

SIZES = (64, 96, 128, 160, 224)
IMAGES = 32  # two batches of 16 per timed run


def timed_pair(size: int, rounds: int) -> tuple[float, float]:
    """Median images/s of the default fine-tune at `size` px: plain, then explicitly padded."""
    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (IMAGES, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(IMAGES) % 4
    module = module_for("fine-tune")
    run = training_steps(module, images, labels)

    def padded() -> None:
        with explicit_padding(module.model):
            run()

    medians = interleaved_times({"plain": run, "padded": padded}, rounds)
    return IMAGES / medians["plain"], IMAGES / medians["padded"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        plain, padded = timed_pair(size, args.rounds)
        rows.append({"image_size": size, "plain_images_s": plain, "padded_images_s": padded})
        print(f"{size} px: {plain:.1f} → {padded:.1f} images/s")
    write_csv("small_maps", rows)
    lines = [
        "# Training step with and without explicit padding (EfficientNet-Lite0, default fine-tune, batch 16)",
        "",
        f"Command: `python benchmarks/small_maps.py --rounds {args.rounds}` at commit {_commit()}; "
        f"{_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{os.getloadavg()[1]:.1f} (5 min) when written.",
        "Medians of rounds timed in turns; the last stage's map is size/32 px against 5x5 kernels.",
        "",
        "| image size | last map | plain images/s | padded images/s | speed-up |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['image_size']} | {r['image_size'] // 32} | {r['plain_images_s']:.1f} | "
        f"{r['padded_images_s']:.1f} | {r['padded_images_s'] / r['plain_images_s']:.2f}x |"
        for r in rows
    ]
    (RESULTS / "small_maps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
