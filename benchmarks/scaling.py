"""How the cost of `transferkit fit` and `transferkit predict` grows with images and image size.

BENCHMARKS.md section 4. For each point, `transferkit fit` (the default strategy, `--epochs`
fine-tuning epochs) on a stratified ELPV subset (`data.subset`), then `transferkit predict` on the same
images with the run's bundle (its 4 test-time views), each in its own process: wall time and peak RSS
(`os.wait4`). `data.cache=false`, so every fit decodes its images, as a first run does.

The image counts run at the largest size; the other sizes at the middle count. A straight line
`seconds = fixed + per_image * images` is fitted to the counts; the table gives its residuals.

    python benchmarks/scaling.py                                   # quick: about 10 minutes
    python benchmarks/scaling.py --images 250 500 1000 2624 --epochs 7 --sizes 128 160 224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from default_fit import RESULTS, _source_state, run_seed, write_csv


def fit_point(images: int, size: int, epochs: int, out: Path) -> dict[str, Any]:
    extra = ["--epochs", str(epochs), "--image-size", str(size)]
    extra += ["--set", f"data.subset={images}", "--set", "data.cache=false"]
    result = run_seed(0, out, extra)
    (run_dir,) = out.iterdir()
    return {"fit_s": result["wall_min"] * 60, "fit_rss_gib": result["peak_rss_gib"], "run_dir": run_dir}


def predict_point(run_dir: Path, paths: list[str]) -> dict[str, float]:
    """`transferkit predict` on `paths` in a child process; its wall time and peak RSS."""
    command = [sys.executable, "-m", "transferkit", "predict", str(run_dir), *paths, "--format", "csv"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"predict failed (status {status}): {' '.join(command[:6])} ...")
    return {"predict_s": time.perf_counter() - started, "predict_rss_gib": usage.ru_maxrss / 2**20}


def subset_paths(images: int) -> list[str]:
    from transferkit.config import DataConfig
    from transferkit.data.load import load_source

    return [record.path for record in load_source(DataConfig(subset=images)).records]


def measure(points: list[tuple[int, int]], epochs: int, out: Path) -> list[dict[str, Any]]:
    rows = []
    out = out / time.strftime("%Y%m%d-%H%M%S")  # run_seed expects an empty folder per fit
    for images, size in points:
        fitted = fit_point(images, size, epochs, out / f"{images}-{size}px")
        row = {"images": images, "image_size": size, **fitted}
        row |= predict_point(fitted["run_dir"], subset_paths(images))
        row["predict_images_per_s"] = images / row["predict_s"]
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
    return rows


def count_size(rows: list[dict[str, Any]]) -> int:
    """The image size at which the image counts ran: the largest."""
    return max(row["image_size"] for row in rows)


def linear_fit(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """(fixed seconds, seconds per image) of the least-squares line through the image-count points."""
    points = [row for row in rows if row["image_size"] == count_size(rows)]
    per_image, fixed = np.polyfit([r["images"] for r in points], [r[key] for r in points], 1)
    return float(fixed), float(per_image)


COLUMNS = ["images", "image_size", "fit_s", "fit_rss_gib", "predict_s", "predict_rss_gib"]


def markdown(rows: list[dict[str, Any]], command: str, machine: str, epochs: int) -> str:
    lines = [
        "# How cost grows: transferkit fit and predict on ELPV subsets",
        "",
        f"Command: `{command}` at commit {_source_state()}",
        "",
        machine,
        "",
        f"fit: default strategy (head on frozen features, then {epochs} fine-tuning epoch(s)), seed 0,",
        "`data.cache=false`; predict: `transferkit predict RUN_DIR <the subset's files>`, 4 test-time",
        "views per image. Wall time and peak RSS of each process.",
        "",
        "| images | px | fit s | fit RSS GiB | predict s | predict images/s | predict RSS GiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['images']} | {r['image_size']} | {r['fit_s']:.0f} | {r['fit_rss_gib']:.2f} | "
        f"{r['predict_s']:.0f} | {r['predict_images_per_s']:.1f} | {r['predict_rss_gib']:.2f} |"
        for r in rows
    ]
    lines += ["", f"Straight lines through the {count_size(rows)} px points:", ""]
    for key, name in (("fit_s", "fit"), ("predict_s", "predict")):
        fixed, per_image = linear_fit(rows, key)
        residuals = [
            r[key] - (fixed + per_image * r["images"]) for r in rows if r["image_size"] == count_size(rows)
        ]
        lines.append(
            f"- {name}: {fixed:.0f} s fixed + {per_image * 1000:.0f} ms per image; residuals "
            + ", ".join(f"{value:+.1f} s" for value in residuals)
        )
    return "\n".join([*lines, ""])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6), dpi=110)
    axes = figure.subplots(2, 2)
    size = count_size(rows)
    by_images = [r for r in rows if r["image_size"] == size]
    middle = sorted(r["images"] for r in by_images)[len(by_images) // 2]
    by_size = sorted((r for r in rows if r["images"] == middle), key=lambda r: r["image_size"])
    for column, (group, x_key, x_label) in enumerate(
        [(by_images, "images", f"images ({size} px)"), (by_size, "image_size", f"px ({middle} images)")]
    ):
        xs = [r[x_key] for r in group]
        for key, label in (("fit", "fit"), ("predict", "predict")):
            axes[0][column].plot(xs, [r[f"{key}_s"] for r in group], "o-", label=label)
            axes[1][column].plot(xs, [r[f"{key}_rss_gib"] for r in group], "o-", label=label)
        axes[0][column].set(xlabel=x_label, ylabel="wall s")
        axes[1][column].set(xlabel=x_label, ylabel="peak RSS GiB")
        axes[0][column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def write(rows: list[dict[str, Any]], command: str, machine: str, epochs: int) -> None:
    write_csv("scaling", rows, [*COLUMNS, "predict_images_per_s"])
    (RESULTS / "scaling.md").write_text(markdown(rows, command, machine, epochs))
    plot(rows, RESULTS / "scaling.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-scaling"))
    args = parser.parse_args()
    middle = sorted(args.images)[len(args.images) // 2]
    points = [(images, max(args.sizes)) for images in args.images]
    points += [(middle, size) for size in sorted(args.sizes)[:-1]]
    load_before = os.getloadavg()[0]
    rows = measure(points, args.epochs, args.out)
    import torch

    machine = (
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); 1-minute load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after."
    )
    command = (
        f"python benchmarks/scaling.py --images {' '.join(map(str, args.images))} "
        f"--sizes {' '.join(map(str, args.sizes))} --epochs {args.epochs}"
    )
    write(rows, command, machine, args.epochs)
    print((RESULTS / "scaling.md").read_text())


if __name__ == "__main__":
    main()
