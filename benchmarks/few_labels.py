"""Few labels: test accuracy against labels per class, per task and recipe, over seeds.

Each (task, labels per class, recipe, seed) cell is one `transferkit fit` child process (wall time and
peak RSS are that process's alone), with the budget set by `--labels-per-class` on a split that every
cell of a task shares (`data.split_seed` fixed). The recipes:

- `random-init`: `--no-pretrained --strategy full`, for `--random-init-epochs` epochs (a control);
- `linear-probe`: `--strategy linear-probe`;
- `default`: no strategy flag (the packaged EfficientNet-Lite0, fine-tune);
- `auto`: `--model auto`, the start chosen among the packaged models by its scores on the train split;
- `chained` (chained task only): `--model run:SOURCE`;
- `chained-l2sp` (chained task only): the same, with L2-SP toward the ImageNet weights SOURCE began
  from (`--regularizer l2-sp --set train.regularizer.toward=ancestor`);
- `self-training`: the default with `--semi self-training`: the task's train images beyond the budget
  form the unlabeled pool, labelled by the default trained first on the budget.

The tasks: `digits` (scikit-learn's 8x8 digits, 64 px), `elpv` (4 classes) and `elpv-binary`
(functional vs defective), both at the weights' 224 px and slow on a CPU, so only on request; and
`chained`: digits 5-9 (64 px), starting from SOURCE, a default fit on digits 0-4 with all their labels
(one run, shared by every cell). Its auto is `--model auto,run:SOURCE` (the packaged models, the run and
its ancestors). Its data are PNG files and manifests written under OUT/data.

A finished cell keeps its result in OUT/cells/.../result.json and is not rerun while its arguments are
unchanged, so a long grid can be stopped and continued; the result files are written from every cell
asked for once they are all done.

    python benchmarks/few_labels.py                                     # digits and chained, 3 seeds
    python benchmarks/few_labels.py --tasks elpv elpv-binary --budgets 5 25
    python benchmarks/few_labels.py --tasks digits --budgets 5 --seeds 0 --epochs 1 --random-init-epochs 2 \\
        --image-size 32 --name few_labels_smoke                         # a smoke test, 5 minutes
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from default_fit import RESULTS, _cpu, _source_state, run_fit, write_csv
from transferkit.config import TrainConfig

SPLIT_SEED = 0  # every cell of a task is tested on the same images (and budgets draw nested subsets)
RANDOM_INIT, PROBE, DEFAULT, AUTO, CHAINED = "random-init", "linear-probe", "default", "auto", "chained"
CHAINED_L2SP, SELF_TRAINING = "chained-l2sp", "self-training"
RECIPES = (RANDOM_INIT, PROBE, DEFAULT, AUTO, CHAINED, CHAINED_L2SP, SELF_TRAINING)
TOWARD_ANCESTOR = ["--regularizer", "l2-sp", "--set", "train.regularizer.toward=ancestor"]
DIGITS_AS_SOURCE = ["--channels", "1", "--augment", "crop"]  # PNG digits read as the packaged set is
MARGIN = 0.01  # the targets: chained and auto within 1 point


@dataclass(frozen=True)
class Task:
    """A dataset with its default image size (None: the weights' own) and the flags its cells share."""

    name: str
    data: str
    image_size: int | None
    flags: tuple[str, ...] = ()
    chained: bool = False


TASKS = {
    "digits": Task("digits", "digits", 64),
    "chained": Task("chained", "digits-5-9.csv", 64, tuple(DIGITS_AS_SOURCE), chained=True),
    "elpv": Task("elpv", "elpv", None),
    "elpv-binary": Task("elpv-binary", "elpv:binary", None),
}


@dataclass(frozen=True)
class Settings:
    """What every cell of one invocation shares."""

    out: Path
    epochs: int | None
    random_init_epochs: int
    image_size: int | None
    threads: int | None = None  # OMP_NUM_THREADS of each fit (None: torch's default, every core)

    def size(self, task: Task) -> list[str]:
        size = self.image_size or task.image_size
        return ["--image-size", str(size)] if size else []


def write_digit_manifests(root: Path) -> dict[str, Path]:
    """digits as 8x8 PNG files, and a manifest each for classes 0-4 and 5-9 (path,label; no split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # as the packaged `digits`
    (root / "digits").mkdir(parents=True, exist_ok=True)
    manifests = {}
    for name, classes in (("digits-0-4.csv", range(5)), ("digits-5-9.csv", range(5, 10))):
        rows = ["path,label"]
        for index in np.flatnonzero(np.isin(digits.target, list(classes))):
            path = root / "digits" / f"{index:04d}.png"
            if not path.exists():
                Image.fromarray(pixels[index], mode="L").save(path)
            rows.append(f"digits/{index:04d}.png,{digits.target[index]}")
        (root / name).write_text("\n".join(rows) + "\n")
        manifests[name] = root / name
    return manifests


def run_cell(
    folder: Path, arguments: list[str], facts: dict[str, Any], threads: int | None = None
) -> dict[str, Any]:
    """One fit in `folder`, or the one it holds with the same arguments and library source (its process
    facts are kept in result.json, its figures are read from the run's metrics.json)."""
    saved = folder / "result.json"
    process = json.loads(saved.read_text()) if saved.exists() else {}
    if process.get("arguments") != arguments or process.get("src") != _src_tree():
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted or outdated cell starts afresh
        folder.mkdir(parents=True)
        fit = run_fit([*arguments, "--out", str(folder)], log=folder / "fit.log", threads=threads)
        process = {"arguments": arguments, "src": _src_tree(), "run_dir": str(fit.run_dir)}
        process["wall_min"] = fit.wall_s / 60
        process |= {"cpu_min": fit.cpu_s / 60, "peak_rss_gib": fit.peak_rss_gib}
        process["load"] = os.getloadavg()[1]  # the 5-minute load average as the fit ended: other jobs
        saved.write_text(json.dumps(process, indent=1))
    figures = {key: process.get(key) for key in ("wall_min", "cpu_min", "load", "peak_rss_gib", "run_dir")}
    return {**facts, **run_figures(Path(process["run_dir"])), **figures}


@functools.cache
def _src_tree() -> str:
    """The git tree of src/, so that a cell made by other library code is rerun (a commit that changes
    only benchmarks/ or docs keeps the finished cells)."""
    tree = subprocess.run(["git", "rev-parse", "HEAD:src"], capture_output=True, text=True, check=False)
    status = subprocess.run(
        ["git", "status", "--porcelain", "src"], capture_output=True, text=True, check=False
    )
    return tree.stdout.strip() + (" with uncommitted changes" if status.stdout.strip() else "")


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Test accuracy, the start chosen and the WiSE-FT α of a finished run."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "accuracy": metrics["test"]["accuracy"],
        "balanced_accuracy": metrics["test"]["balanced_accuracy"],
        "start": (metrics.get("model_choice") or {}).get("chosen", ""),
        # 0: the fitted head on the start's own features, the fine-tuned network discarded
        "wise_ft_alpha": (metrics.get("weight_choice") or {}).get("alpha"),
        "held_out": metrics["calibration"]["fitted_on"],
    }


def source_run(settings: Settings, task: Task) -> dict[str, Any]:
    """The chained task's start: the default recipe on digits 0-4, every label, seed 0."""
    data = settings.out / "data" / "digits-0-4.csv"
    arguments = ["--data", str(data), "--seed", "0", "--set", f"data.split_seed={SPLIT_SEED}"]
    arguments += [*settings.size(task), *_epochs(settings.epochs), *DIGITS_AS_SOURCE]
    return run_cell(settings.out / "source", arguments, {"task": "digits 0-4 (source)"}, settings.threads)


def recipe_flags(recipe: str, settings: Settings, source: str | None) -> list[str]:
    """The flags that make a recipe; `source` is the chained task's start (`run:` spec) or None."""
    if recipe == RANDOM_INIT:
        return ["--no-pretrained", "--strategy", "full", "--epochs", str(settings.random_init_epochs)]
    flags = {PROBE: ["--strategy", "linear-probe"], DEFAULT: [], CHAINED: ["--model", str(source)]}
    flags[SELF_TRAINING] = ["--semi", "self-training"]  # the pool: the task's train images beyond the budget
    flags[CHAINED_L2SP] = [*flags[CHAINED], *TOWARD_ANCESTOR]
    flags[AUTO] = ["--model", f"auto,{source}" if source else "auto"]
    return [*flags[recipe], *_epochs(settings.epochs)]


def task_recipes(task: Task, chosen: Sequence[str]) -> list[str]:
    return [recipe for recipe in chosen if recipe not in (CHAINED, CHAINED_L2SP) or task.chained]


def _epochs(epochs: int | None) -> list[str]:
    return ["--epochs", str(epochs)] if epochs is not None else []


def run_grid(args: argparse.Namespace, settings: Settings, source: str | None) -> list[dict[str, Any]]:
    """Every cell, seed by seed (a stopped grid has whole seeds done), printing each as it ends;
    `source` is the chained task's start (`run:` spec)."""
    tasks = [TASKS[name] for name in args.tasks]
    rows = []
    for seed in args.seeds:
        for task in tasks:
            data = str(settings.out / "data" / task.data) if task.chained else task.data
            for budget in args.budgets:
                for recipe in task_recipes(task, args.recipes):
                    arguments = ["--data", data, "--labels-per-class", str(budget), "--seed", str(seed)]
                    arguments += ["--set", f"data.split_seed={SPLIT_SEED}", *settings.size(task), *task.flags]
                    arguments += recipe_flags(recipe, settings, source if task.chained else None)
                    folder = settings.out / "cells" / task.name / f"k{budget}" / recipe / f"seed{seed}"
                    facts = {"task": task.name, "budget": budget, "recipe": recipe, "seed": seed}
                    rows.append(run_cell(folder, arguments, facts, settings.threads))
                    shown = [*facts, "accuracy", "wall_min", "cpu_min", "load"]
                    print(json.dumps({key: rows[-1][key] for key in shown}), flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, budget, recipe): mean and sd of accuracy over seeds, mean wall time, largest RSS."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["budget"], row["recipe"]), []).append(row)
    summary = []
    for (task, budget, recipe), members in groups.items():
        accuracies = [row["accuracy"] for row in members]
        starts = sorted({_start_name(row["start"]) for row in members if row["start"]})
        alphas = [row["wise_ft_alpha"] for row in members if row["wise_ft_alpha"] is not None]
        summary.append(
            {
                "task": task,
                "budget": budget,
                "recipe": recipe,
                "seeds": len(members),
                "mean": statistics.mean(accuracies),
                "sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "wall_min": statistics.mean(row["wall_min"] for row in members),
                "cpu_min": _mean(row["cpu_min"] for row in members),
                "load": _mean(row["load"] for row in members),
                "peak_rss_gib": max(row["peak_rss_gib"] for row in members),
                "starts": ", ".join(starts),
                "alphas": " ".join(f"{alpha:g}" for alpha in alphas),
                "held_out": members[0]["held_out"],
            }
        )
    return summary


def _mean(values: Iterable[float | None]) -> float:
    known = [value for value in values if value is not None]
    return statistics.mean(known) if known else math.nan


def _start_name(spec: str) -> str:
    return "the digits 0-4 run" if spec.startswith("run:") else spec


def markdown(summary: list[dict[str, Any]], source: dict[str, Any] | None, settings: Settings) -> str:
    lines = [
        "# Few labels: test accuracy against labels per class",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/few_labels.py', *sys.argv[1:]])}` at commit "
        f"{_source_state()}.",
        f"Machine: {_cpu()}; threads per fit: {settings.threads or 'every core'}; load average when the "
        f"results were written {_load()}.",
        "",
        *_protocol(summary, source, settings),
        "",
        "| task | labels per class | recipe | seeds | test accuracy (mean ± sd) | wall (min) | CPU (min) | "
        "load | peak RSS (GiB) | WiSE-FT α per seed | start chosen |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in summary:
        lines.append(
            f"| {row['task']} | {row['budget']} | {row['recipe']} | {row['seeds']} | "
            f"{row['mean']:.2%} ± {row['sd']:.2%} | {row['wall_min']:.2f} | {row['cpu_min']:.2f} | "
            f"{row['load']:.1f} | {row['peak_rss_gib']:.2f} | "
            f"{row['alphas']} | {row['starts']} |"
        )
    lines += ["", *_probe_check(summary), "", *_start_check(summary)]
    pool = _pool_check(summary)
    lines += ["", *pool] if pool else []
    return "\n".join(lines) + "\n"


def _protocol(summary: list[dict[str, Any]], source: dict[str, Any] | None, settings: Settings) -> list[str]:
    held_out = sorted({f"{row['task']}: {row['held_out']}" for row in summary})
    epochs = (
        f"`--epochs {settings.epochs}`"
        if settings.epochs is not None
        else f"fit's default, {TrainConfig().epochs}"
    )
    lines = [
        f"Epochs: {epochs}; random init "
        f"`--no-pretrained --strategy full --epochs {settings.random_init_epochs}`. `data.split_seed` "
        f"{SPLIT_SEED} for every cell: one test set per task, and one labelled subset per budget shared by "
        "the seeds (the budgets' subsets are nested), so the sd is the spread of training, not of the "
        "draw of labels. Wall time is the whole `fit` process (start choice, training, test, report); "
        "the first cell of a task also decodes its images into the cache. CPU: user + system time of the "
        "process; load: the machine's 5-minute load average as the fit ended (other jobs slow the wall "
        "time, and a 2-core machine above a load of 2 inflates it). WiSE-FT α 0 keeps the fitted "
        "head on the start's own features: the fine-tuning is discarded, and the default is then the "
        "linear probe.",
        "",
        "The budget counts every label a cell sees, train and validation together; validation that small "
        "hands the WiSE-FT α and the temperature to cross-validation over the budget's images: "
        f"{'; '.join(held_out)}.",
    ]
    if source is not None:
        lines += [
            "",
            f"Chained task: digits 5-9 from a default fit on every digit 0-4 ({source['accuracy']:.2%} test "
            f"accuracy on 0-4, WiSE-FT α {source['wise_ft_alpha']}, {source['wall_min']:.1f} min, not "
            "counted in the cells' wall times).",
        ]
        if source["wise_ft_alpha"] == 0:
            lines += [
                "",
                "**The source run kept α = 0: its network is the ImageNet one with a new head, so the "
                "chained start is the ImageNet start and the chained comparison measures nothing.**",
            ]
    return lines


def _probe_check(summary: list[dict[str, Any]]) -> list[str]:
    """Default against linear probe per task and budget (the target: never below by more than the seed
    spread, above on average)."""
    lines = [
        "## Default against linear probe",
        "",
        "Spread: the larger sd of the two. Target: the default never below the probe by more than the "
        "spread, and above it on average.",
        "",
        "| task | labels per class | default − probe (points) | spread (points) | default below by more |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    gaps = []
    for task, budget, cells in _by_budget(summary):
        if DEFAULT in cells and PROBE in cells:
            gap = cells[DEFAULT]["mean"] - cells[PROBE]["mean"]
            spread = max(cells[DEFAULT]["sd"], cells[PROBE]["sd"])
            gaps.append(gap)
            below = "**yes**" if gap < -spread else "no"
            lines.append(f"| {task} | {budget} | {100 * gap:+.2f} | {100 * spread:.2f} | {below} |")
    if gaps:
        lines += ["", f"Mean default − probe over these rows: {100 * statistics.mean(gaps):+.2f} points."]
    return lines


def _start_check(summary: list[dict[str, Any]]) -> list[str]:
    """Chained start against the ImageNet default, and auto against the better of the two (auto against
    the default on tasks without a chained start)."""
    lines = [
        "## Starts",
        "",
        "Targets on the chained task: the chained start never more than 1 point below the ImageNet "
        "default; `--model auto` within 1 point of the better of the two. On the other tasks auto is "
        "compared with the default (the packaged Lite0). The chained start with L2-SP toward its ImageNet "
        "ancestor is one of the levers that keep generic features.",
        "",
        "| task | labels per class | chained − ImageNet (points) | within 1 point | chained + L2-SP toward "
        "ancestor − ImageNet | within 1 point | auto − better start (points) | within 1 point |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for task, budget, cells in _by_budget(summary):
        if DEFAULT not in cells or AUTO not in cells:
            continue
        default, auto = cells[DEFAULT]["mean"], cells[AUTO]["mean"]
        chained = cells[CHAINED]["mean"] if CHAINED in cells else None
        better = max(default, chained) if chained is not None else default
        levers = [_gap(cells, recipe, default) for recipe in (CHAINED, CHAINED_L2SP)]
        auto_cells = f"{100 * (auto - better):+.2f} | {_met(auto - better)}"
        lines.append(f"| {task} | {budget} | {' | '.join(levers)} | {auto_cells} |")
    return lines


def _pool_check(summary: list[dict[str, Any]]) -> list[str]:
    """Self-training on the pool against the default on the labels alone (the target: never below by
    more than the seed spread)."""
    rows = []
    for task, budget, cells in _by_budget(summary):
        if DEFAULT in cells and SELF_TRAINING in cells:
            gain = cells[SELF_TRAINING]["mean"] - cells[DEFAULT]["mean"]
            spread = max(cells[DEFAULT]["sd"], cells[SELF_TRAINING]["sd"])
            below = "**yes**" if gain < -spread else "no"
            rows.append(f"| {task} | {budget} | {100 * gain:+.2f} | {100 * spread:.2f} | {below} |")
    if not rows:
        return []
    return [
        "## Unlabeled pool",
        "",
        "Self-training (the default, with the task's other train images as its pool) against the default "
        "on the labels alone. Spread: the larger sd of the two.",
        "",
        "| task | labels per class | self-training − default (points) | spread (points) | below by more |",
        "| --- | ---: | ---: | ---: | --- |",
        *rows,
    ]


def _gap(cells: dict[str, dict[str, Any]], recipe: str, default: float) -> str:
    """A recipe's mean minus the default's, and whether it is within the margin; blank when not run."""
    if recipe not in cells:
        return " | "
    gap = cells[recipe]["mean"] - default
    return f"{100 * gap:+.2f} | {_met(gap)}"


def _met(gap: float) -> str:
    return "yes" if gap >= -MARGIN else "**no**"


def _by_budget(summary: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, dict[str, Any]]]]:
    cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in summary:
        cells.setdefault((row["task"], row["budget"]), {})[row["recipe"]] = row
    return [(task, budget, recipes) for (task, budget), recipes in cells.items()]


def _load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against labels per class: a panel per task, a line per recipe, sd as error bars."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(row["task"] for row in summary))
    figure = Figure(figsize=(4.2 * len(tasks), 3.8), dpi=110)
    for index, task in enumerate(tasks, start=1):
        axes = figure.add_subplot(1, len(tasks), index)
        for place, recipe in enumerate(RECIPES):
            rows = sorted((r for r in summary if r["task"] == task and r["recipe"] == recipe), key=_budget)
            if rows:
                # recipes side by side around each budget, so equal accuracies do not hide each other
                budgets = [row["budget"] * 1.04 ** (place - len(RECIPES) // 2) for row in rows]
                means = [row["mean"] for row in rows]
                errors = [row["sd"] for row in rows]
                axes.errorbar(budgets, means, yerr=errors, marker="o", capsize=3, label=recipe)
        budgets = sorted({row["budget"] for row in summary if row["task"] == task})
        axes.set_xscale("log")
        axes.set_xticks(budgets, [str(budget) for budget in budgets])
        axes.minorticks_off()
        axes.set_title(task)
        axes.set_xlabel("labels per class")
        axes.set_ylabel("test accuracy" if index == 1 else "")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def _budget(row: dict[str, Any]) -> int:
    return int(row["budget"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["digits", "chained"])
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 25], help="labels per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--epochs", type=int, help="epochs of the pretrained recipes (default: fit's)")
    parser.add_argument("--random-init-epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, help="every task's size (default: digits 64, ELPV 224)")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads of each fit (OMP_NUM_THREADS); 1: steadier times when other jobs share the cores",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-few-labels"))
    parser.add_argument("--name", default="few_labels", help="results/NAME.{csv,md,png}")
    args = parser.parse_args()
    settings = Settings(
        args.out.absolute(), args.epochs, args.random_init_epochs, args.image_size, args.threads
    )
    source = None
    if "chained" in args.tasks:
        write_digit_manifests(settings.out / "data")
        source = source_run(settings, TASKS["chained"])
        print(json.dumps({key: source[key] for key in ("task", "accuracy", "wall_min")}), flush=True)
    rows = run_grid(args, settings, f"run:{source['run_dir']}" if source else None)
    summary = summarize(rows)
    fields = ["task", "budget", "recipe", "seed", "accuracy", "balanced_accuracy", "wall_min", "cpu_min"]
    fields += ["load", "peak_rss_gib"]
    write_csv(args.name, rows, [*fields, "start", "held_out"])
    (RESULTS / f"{args.name}.md").write_text(markdown(summary, source, settings))
    plot(summary, RESULTS / f"{args.name}.png")
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
