"""The embedded default (`transferkit fit` with no arguments) on the ELPV protocol, over several seeds.

Each seed runs as its own process, so wall time and peak memory (RSS) are that run's alone. Flags
after `--` go to `transferkit fit`, to measure a recipe other than the default:

    python benchmarks/default_fit.py --seeds 0 1 2
    python benchmarks/default_fit.py --seeds 0 1 2 --name elpv_300px -- --image-size 300

`--jobs 3` runs the seeds at once, each on its share of the cores: the accuracies are the same, the
wall times are not a lone run's (the table says so).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFECTIVE = "p=1"  # the class an inspector must not miss
ANCHORS = {  # docs/benchmarks.md: binary and 4-class test accuracy on the same protocol
    "majority class": (0.687, 0.575),
    "SVM, hand-crafted features (Deitsch 2019)": (0.8244, None),
    "linear probe, Lite0 224 px (anchor)": (0.854, 0.771),
    "naive full fine-tuning, Lite0 224 px, 8 epochs (anchor)": (0.863, 0.780),
    "fine-tuned VGG-19, 300 px, GPU (Deitsch 2019)": (0.8842, None),
}


@dataclass(frozen=True)
class FitProcess:
    """One finished `transferkit fit` child process."""

    run_dir: Path
    metrics: dict[str, Any]  # its metrics.json
    wall_s: float
    peak_rss_gib: float
    cpu_s: float  # user + system time: less sensitive than wall time to other jobs on the machine


def run_fit(arguments: Sequence[str], log: Path | None = None, threads: int | None = None) -> FitProcess:
    """Runs `transferkit fit ARGUMENTS` in a child process, its stderr (progress, warnings, errors) into
    `log` or discarded; the wall time and peak RSS (`os.wait4`) are that process's alone."""
    command = [sys.executable, "-m", "transferkit", "fit", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    started = time.perf_counter()
    with open(log, "w") if log else contextlib.nullcontext(subprocess.DEVNULL) as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        stdout = process.stdout.read() if process.stdout else ""
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        tail = log.read_text()[-3000:] if log else ""
        code = os.waitstatus_to_exitcode(status)
        raise SystemExit(f"`{shlex.join(command)}` failed (exit code {code}):\n{stdout}{tail}")
    report = Path(stdout.split("report: ")[1].split()[0])
    metrics = json.loads((report.parent / "metrics.json").read_text())
    return FitProcess(report.parent, metrics, wall, usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime)


def run_seed(seed: int, out: Path, extra: list[str], threads: int | None = None) -> dict[str, float]:
    """Runs `transferkit fit` for one seed in a child process; returns its metrics, time and peak RSS."""
    fit = run_fit(["--seed", str(seed), "--out", str(out), *extra], threads=threads)
    return {
        "seed": seed,
        **fit.metrics["headline"],
        **test_sampling(fit.metrics["test"]),
        **defective_recall(fit.metrics["test"]),
        "wall_min": fit.wall_s / 60,
        "peak_rss_gib": fit.peak_rss_gib,
    }


def test_sampling(test: dict[str, Any]) -> dict[str, float]:
    """Half the width of the 95 % (Wilson) interval of the test accuracies: how far the figure moves
    with another draw of test images, beside the seed spread (which moves with training)."""
    half = {"accuracy_half_ci": (test["intervals"]["accuracy"][1] - test["intervals"]["accuracy"][0]) / 2}
    binary = test.get("groupings", {}).get("binary")
    if binary:
        bounds = binary["intervals"]["accuracy"]
        half["binary_accuracy_half_ci"] = (bounds[1] - bounds[0]) / 2
    return half


def defective_recall(test: dict[str, Any]) -> dict[str, float]:
    """The recall of fully defective cells (p = 1) by the most probable class, and with a recall target
    (`--recall-target`) the operating point's recall, precision, accuracy and share of images flagged."""
    row = {"recall_p1": next(c["recall"] for c in test["per_class"] if c["class"] == DEFECTIVE)}
    point = test.get("operating_point")
    if point:
        row |= {f"point_{key}": point[key] for key in ("recall", "precision", "accuracy", "flagged")}
    return row


def write_csv(name: str, rows: Sequence[Mapping[str, Any]], fields: list[str] | None = None) -> None:
    """results/<name>.csv, one line per row: the columns `fields` (others left out), else the first row's."""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=fields or list(rows[0]), extrasaction="ignore" if fields else "raise"
        )
        writer.writeheader()
        writer.writerows(rows)


def write_results(
    name: str, rows: list[dict[str, float]], command: str, extra: list[str], jobs: int = 1
) -> None:
    write_csv(name, rows)
    (RESULTS / f"{name}.md").write_text(markdown_table(rows, command, extra, jobs))
    plot(rows, RESULTS / f"{name}.png")


def summary(rows: list[dict[str, float]], key: str) -> str:
    values = [row[key] for row in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def markdown_table(rows: list[dict[str, float]], command: str, extra: list[str], jobs: int = 1) -> str:
    keys = ["binary_accuracy", "binary_accuracy_half_ci", "accuracy", "accuracy_half_ci", "balanced_accuracy"]
    keys += ["macro_f1", *(key for key in ("mae", "qwk") if key in rows[0]), "recall_p1"]
    keys += [key for key in rows[0] if key.startswith("point_")] + ["wall_min", "peak_rss_gib"]
    recipe = f"`transferkit fit {' '.join(extra)}`" if extra else "transferkit fit (embedded default)"
    lines = [
        f"# {recipe} on ELPV",
        "",
        f"Command: `{command}` at commit {_commit()}",
        "",
    ]
    if jobs > 1:
        lines += [
            f"{jobs} seeds ran at once, each on {_threads(jobs)} of the {os.cpu_count()} cores: wall_min is "
            "not a lone run's time.",
            "",
        ]
    lines += ["| seed | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    lines += [f"| {row['seed']} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |" for row in rows]
    lines += ["| mean ± sd | " + " | ".join(summary(rows, k) for k in keys) + " |", ""]
    lines += [
        "`*_half_ci`: half the 95 % interval on the test split (another draw of test images), "
        "beside the mean ± sd over seeds (another training). "
        f"Machine: {_cpu()}.",
        "",
    ]
    lines += ["Reference figures (docs/benchmarks.md): binary / 4-class accuracy", ""]
    lines += [f"- {name}: {b:.2%} / {'n/a' if f is None else f'{f:.2%}'}" for name, (b, f) in ANCHORS.items()]
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line), "?")
    return f"{model}, {os.cpu_count()} cores, {'AVX-512' if 'avx512f' in text else 'no AVX-512'}"


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def _source_state() -> str:
    """The commit, and whether src/ had uncommitted changes when the benchmark ran."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "src"], capture_output=True, text=True, check=False
    )
    return _commit() + (" (with uncommitted changes under src/)" if result.stdout.strip() else "")


def plot(rows: list[dict[str, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=110)
    axes = figure.add_subplot()
    names = [*ANCHORS, "transferkit fit (mean of seeds)"]
    values = [b for b, _ in ANCHORS.values()] + [statistics.mean(r["binary_accuracy"] for r in rows)]
    axes.barh(names, values, color=["#bbb"] * len(ANCHORS) + ["#2a7"])
    axes.scatter([r["binary_accuracy"] for r in rows], [len(names) - 1] * len(rows), color="k", zorder=3)
    axes.set_xlim(0.6, 0.92)
    axes.set_xlabel("binary test accuracy (functional vs defective)")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-default"))
    parser.add_argument("--name", default="default_fit")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (sharing the cores)")
    parser.add_argument("extra", nargs="*", help="extra flags for `transferkit fit`, after --")
    args = parser.parse_args()
    threads = _threads(args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = [pool.submit(run_seed, seed, args.out, args.extra, threads) for seed in args.seeds]
        rows = []
        for run in runs:  # each seed's figures as soon as it finishes
            rows.append(run.result())
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python benchmarks/default_fit.py", "--seeds", *map(str, args.seeds)])
    if args.jobs > 1:
        command += f" --jobs {args.jobs}"
    if args.extra:
        command += f" --name {args.name} -- {' '.join(args.extra)}"
    write_results(args.name, rows, command, args.extra, args.jobs)


if __name__ == "__main__":
    main()
