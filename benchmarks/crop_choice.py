"""How elongated images should reach a square network: crops compared out of fold on a task built here.

Steel-strip-like images (4 times as wide as high, grey texture) hold a scratch, a spot or nothing,
anywhere along the strip: the label depends on every part of the image, as in most inspection tasks.
Each crop is `transferkit fit --data STRIPS --folds 5 FLAGS` (the default recipe, seed 0), scored on the
out-of-fold predictions of its train images; the test split is not read.

    python benchmarks/crop_choice.py                      # 60 strips a class, 1024 x 256 px
    python benchmarks/crop_choice.py --per-class 10 -- --epochs 1 --image-size 64    # a smoke test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from default_fit import RESULTS, _cpu, _source_state, run_fit, write_csv

NAME = "crop_choice"
CROPS: dict[str, tuple[str, list[str]]] = {
    "auto": ("auto: squashed whole (crop_pct 1), the default for elongated images", []),
    "weights": ("the weights' centre crop (crop_pct 0.882)", ["--crop", "weights"]),
    "squash": ("squashed, then the weights' crop_pct 0.882", ["--crop", "squash"]),
    "border": ("padded to a square, whole (crop_pct 1)", ["--crop", "border", "--crop-pct", "1"]),
}
KINDS = ("ok", "scratch", "spot")


def strip(rng: np.random.Generator, kind: str, width: int, height: int) -> Image.Image:
    """A blurred grey texture with a dark scratch or spot (or nothing) at a random place."""
    noise = rng.normal(128, 12, (height // 4, width // 4))
    texture = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    pixels = np.asarray(texture.filter(ImageFilter.GaussianBlur(2)), np.float64)
    image = Image.fromarray(np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    x, y = rng.uniform(20, width - 20), rng.uniform(20, height - 20)
    shade = int(rng.uniform(60, 80))
    if kind == "scratch":
        angle, half = rng.uniform(0, np.pi), rng.uniform(15, 25)
        dx, dy = np.cos(angle) * half, np.sin(angle) * half
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=shade, width=3)
    elif kind == "spot":
        radius = rng.uniform(7, 11)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=shade)
    return image.convert("RGB")


def make_strips(root: Path, per_class: int, width: int, height: int) -> Path:
    """`root/<kind>/<kind>_NNN.png`, seeded: the same images on every machine."""
    rng = np.random.default_rng(0)
    for kind in KINDS:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            strip(rng, kind, width, height).save(root / kind / f"{kind}_{n:03d}.png")
    return root


def measure(crop: str, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    label, flags = CROPS[crop]
    fit = run_fit(
        ["--data", str(data), "--out", str(out), "--folds", "5", *flags, *extra], log=out / f"{crop}.log"
    )
    held_out = fit.metrics["cv"]["out_of_fold"]
    low, high = held_out["intervals"]["accuracy"]
    return {
        "crop": crop,
        "recipe": label,
        "flags": " ".join(flags),
        "images": held_out["num_samples"],
        "accuracy": held_out["accuracy"],
        "accuracy_low": low,
        "accuracy_high": high,
        "macro_f1": held_out["macro_f1"],
        "wall_min": fit.wall_s / 60,
    }


def markdown(rows: list[dict[str, Any]], command: str, shape: str) -> str:
    lines = [
        "# Elongated images: which crop, out of fold (test not read)",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}; one fit at a time (its wall time "
        "counts any other work on the machine).",
        "",
        f"Strips of {shape} px with a scratch, a spot or nothing anywhere along them (`crop_choice.py`); "
        "each row is `transferkit fit --folds 5 FLAGS` (seed 0), scored on the out-of-fold predictions of "
        "its train images. Interval: 95 % (Wilson) of the accuracy.",
        "",
        "| crop | flags | images | accuracy | 95 % interval | macro-F1 | wall (min) |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['recipe']} | `{row['flags']}` | {row['images']} | {row['accuracy']:.1%} | "
            f"{row['accuracy_low']:.1%} to {row['accuracy_high']:.1%} | {row['macro_f1']:.3f} | "
            f"{row['wall_min']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", nargs="+", choices=list(CROPS), default=list(CROPS))
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--shape", default="1024x256", help="width x height of every strip")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-crop"))
    parser.add_argument("--name", default=NAME)
    parser.add_argument("extra", nargs="*", help="flags for every `transferkit fit`, after --")
    args = parser.parse_args()
    width, height = (int(side) for side in args.shape.split("x"))
    data = make_strips(args.out / f"strips-{args.shape}-{args.per_class}", args.per_class, width, height)
    command = "python benchmarks/crop_choice.py " + " ".join(sys.argv[1:])
    rows = []
    for crop in args.crops:  # the files rewritten after each crop
        rows.append(measure(crop, data, args.out, args.extra))
        write_csv(args.name, rows)
        (RESULTS / f"{args.name}.md").write_text(markdown(rows, command.strip(), args.shape))
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
