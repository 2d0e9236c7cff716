"""Every fine-tuning strategy on the ELPV protocol: accuracy, wall time, time per epoch, peak memory.

Each run is its own process (`default_fit.run_seed`), so wall time and peak RSS are that run's alone.
Quick version (one seed, two epochs, 800 of ELPV's images; about 25 minutes on an idle 2-core CPU):

    python benchmarks/strategies.py --seeds 0 --epochs 2 --subset 800

Full version: ``--seeds 0 1 2 --epochs 7``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from pathlib import Path

from default_fit import RESULTS, _commit, run_seed, write_csv

# (row name, extra flags): each strategy with its defaults, plus partial:2 without augmentation, where
# the frozen layers below the trained ones are computed once and cached.
RUNS = [
    ("linear-probe", ["--strategy", "linear-probe"]),
    ("fine-tune (default)", ["--strategy", "fine-tune"]),
    ("lp-ft", ["--strategy", "lp-ft"]),
    ("full", ["--strategy", "full"]),
    ("partial:2", ["--strategy", "partial:2"]),
    ("partial:2, no augmentation (cached)", ["--strategy", "partial:2", "--augment", "none"]),
    ("gradual", ["--strategy", "gradual"]),
    ("lora", ["--strategy", "lora"]),
    ("bitfit", ["--strategy", "bitfit"]),
]


def seconds_per_epoch(run_dir: Path) -> float | None:
    """Mean training-epoch time from metrics.csv (the head phase has none)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        times = [float(row["seconds"]) for row in csv.DictReader(handle) if row["seconds"]]
    return statistics.mean(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, help="a stratified subset of ELPV (quick runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-strategies"))
    args = parser.parse_args()
    rows = []
    for name, flags in RUNS:
        for seed in args.seeds:
            out = args.out / name.split()[0].replace(":", "_") / str(seed)
            subset = ["--set", f"data.subset={args.subset}"] if args.subset else []
            result = run_seed(seed, out, [*flags, "--epochs", str(args.epochs), *subset])
            (run_dir,) = out.iterdir()
            rows.append({"strategy": name, **result, "s_per_epoch": seconds_per_epoch(run_dir) or 0.0})
            print(json.dumps(rows[-1]), flush=True)
    write(
        rows,
        f"python benchmarks/strategies.py --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}"
        + (f" --subset {args.subset}" if args.subset else ""),
    )


def write(rows: list[dict], command: str) -> None:
    keys = ["binary_accuracy", "accuracy", "balanced_accuracy", "wall_min", "s_per_epoch", "peak_rss_gib"]
    write_csv("strategies", rows, ["strategy", "seed", *keys])
    commit = os.environ.get("TRANSFERKIT_BENCH_COMMIT") or _commit()  # a snapshot's, when run from one
    lines = ["# Fine-tuning strategies on ELPV", "", f"Command: `{command}` at commit {commit}", ""]
    lines += ["| strategy | seeds | " + " | ".join(keys) + " |", "| --- |" + " --- |" * (len(keys) + 1)]
    for name in dict.fromkeys(row["strategy"] for row in rows):
        group = [row for row in rows if row["strategy"] == name]
        cells = [_mean_sd([row[k] for row in group]) for k in keys]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    (RESULTS / "strategies.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / "strategies.png")


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=110)
    axes = figure.add_subplot()
    for name in dict.fromkeys(row["strategy"] for row in rows):
        group = [row for row in rows if row["strategy"] == name]
        x = statistics.mean(row["wall_min"] for row in group)
        y = statistics.mean(row["binary_accuracy"] for row in group)
        axes.scatter(x, y)
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set(xlabel="wall time (min, 2-core CPU)", ylabel="binary test accuracy", title="Strategies on ELPV")
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
