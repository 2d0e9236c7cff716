"""Levers on the ELPV default, compared on validation or out of fold: the test split is never read here.

Each lever is `transferkit fit FLAGS` in its own process (the default's seed and split), scored with
`transferkit evaluate RUN --split val`: the 197 validation images the run carved from train, with the
run's own test-time views and temperature. The fit still makes its own test pass (every fit does), but
nothing here opens it: the recipe chosen here is the one `default_fit.py` then measures on test, over
fresh seeds. The validation images also chose each run's WiSE-FT weight and temperature, which flatters
every lever alike; the interval column says how far another draw of 197 images would move a figure.

197 images rank levers only roughly (14 epochs led the default by 5 points there and by 0.3 on test,
seed 0). `--folds K` scores each lever out of fold instead: `fit --folds K --folds-final ensemble`
trains K models, each predicting the train images it did not see, so all 1,968 train images score it
(an interval about a third as wide) for K fits' time; they also chose its WiSE-FT weight and temperature.

    python benchmarks/elpv_levers.py                       # every lever below, one at a time
    python benchmarks/elpv_levers.py --levers default epochs-14 --folds 5 --name elpv_levers_cv
    python benchmarks/elpv_levers.py --levers default lr-1e-3 --jobs 2
    python benchmarks/elpv_levers.py --levers default bn-adapt --name elpv_levers_smoke -- \\
        --set data.subset=600 --image-size 64 --epochs 1             # a smoke test, minutes
    python benchmarks/elpv_levers.py --summary    # every lever measured so far, in one table and plot

`--summary` reads the results files this script wrote (``results/elpv_levers*.csv``) and sets each lever
beside the default's row of the same invocation (or, for an invocation that ran none, of the one named in
`BASELINES`, scored the same way): one table, out of fold first, and a plot of the 4-class differences
with their intervals, in ``results/elpv_levers_summary.md`` and ``.png``. It runs nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from default_fit import RESULTS, _cpu, _source_state, _threads, run_fit, write_csv
from transferkit.api.evaluate import evaluate

NAME = "elpv_levers"
LEVERS: dict[str, tuple[str, list[str]]] = {
    "default": ("the default: BatchNorm statistics frozen, top rate 3e-4, 224 px", []),
    "lr-1e-3": ("top rate 1e-3", ["--lr", "1e-3"]),
    "bn-adapt": ("BatchNorm statistics adapt", ["--batchnorm", "adapt"]),
    "bn-adapt-lr-1e-3": (
        "BatchNorm statistics adapt, top rate 1e-3 (the default before c7c2818)",
        ["--batchnorm", "adapt", "--lr", "1e-3"],
    ),
    "300px": ("300 px, ELPV's native size", ["--image-size", "300"]),
    "balanced": ("class-balanced batches", ["--balance", "sampler"]),
    "weighted": ("class-weighted loss", ["--balance", "weights"]),
    "lite1": ("EfficientNet-Lite1 at its 240 px", ["--model", "efficientnet_lite1"]),
    "lite2": ("EfficientNet-Lite2 at its 260 px", ["--model", "efficientnet_lite2"]),
    "aux-module-type": ("an auxiliary head on the module type (mono/poly)", ["--aux-label", "module_type"]),
    "epochs-14": ("14 epochs instead of 7", ["--epochs", "14"]),
    "ema": ("an exponential moving average of the weights (decay 0.998)", ["--ema"]),
    "mixup": ("mixup, Beta(0.2, 0.2)", ["--mixup", "0.2"]),
    "unfrozen": ("every layer group trains (none frozen)", ["--set", "train.strategy.frozen_groups=0"]),
    "whole": (
        "the whole cell: no centre crop (the weights' 0.882 cuts 6 % off each side)",
        ["--crop-pct", "1"],
    ),
}
SUMMARY = f"{NAME}_summary"
# Invocations that ran no default of their own -> the invocation whose default row they are compared with
# (the same scoring, the nearest commit).
BASELINES = {
    "elpv_levers_balance": "elpv_levers_more",
    "elpv_levers_cv_unfrozen": "elpv_levers_cv",
    "elpv_levers_cv_epochs14": "elpv_levers_cv",
    "elpv_levers_cv_whole": "elpv_test_views",
}
# Since 429eddd d4 runs average all 8 symmetries at test time; an invocation after it is compared with
# the default's out-of-fold figures with 8 views: `elpv_test_views.py` re-scored elpv_levers_cv's fold
# models so (its 4-view row reproduces elpv_levers_cv's default).
EIGHT_VIEWS = "elpv_test_views"
# Made while the frozen-layer cache fine-tuned 3 layer groups instead of 6 (benchmarks/README.md).
NARROW = {"elpv_levers", "elpv_levers_more", "elpv_levers_balance"}
KEYS = ("binary_accuracy", "accuracy", "accuracy_half_ci", "balanced_accuracy", "macro_f1", "recall_p1")
COSTS = ("wall_min", "peak_rss_gib")


def measure(
    lever: str, out: Path, extra: list[str], threads: int | None, folds: int | None
) -> dict[str, Any]:
    """One lever's fit (`extra` flags after the lever's own), scored on its validation split, or out of
    fold with `folds`."""
    label, flags = LEVERS[lever]
    scoring = ["--folds", str(folds), "--folds-final", "ensemble"] if folds else []
    fit = run_fit(["--out", str(out), *flags, *scoring, *extra], log=out / f"{lever}.log", threads=threads)
    if folds:
        metrics = fit.metrics["cv"]["out_of_fold"]
    elif "cv" in fit.metrics:  # validation was too small: it was folded into the final model's train
        raise SystemExit(f"{lever}: the run cross-validated, so validation trained it ({fit.run_dir})")
    else:
        metrics = evaluate(fit.run_dir, split="val").metrics
    low, high = metrics["intervals"]["accuracy"]
    return {
        "lever": lever,
        "recipe": label,
        "flags": " ".join(flags),
        "images": metrics["num_samples"],
        "binary_accuracy": metrics["groupings"]["binary"]["accuracy"],
        "accuracy": metrics["accuracy"],
        "accuracy_half_ci": (high - low) / 2,
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "recall_p1": next(row["recall"] for row in metrics["per_class"] if row["class"] == "p=1"),
        "wall_min": fit.wall_s / 60,
        "peak_rss_gib": fit.peak_rss_gib,
    }


def markdown(rows: list[dict[str, Any]], command: str, jobs: int, folds: int | None) -> str:
    keys = [*KEYS, *COSTS]
    at_once = "one run at a time" if jobs == 1 else f"{jobs} runs at once, each on {_threads(jobs)} core(s)"
    images = rows[0]["images"]
    scored = (
        f"scored on the out-of-fold predictions of `--folds {folds} --folds-final ensemble` for its {images} "
        "train images (validation folded in)"
        if folds
        else f"scored by `transferkit evaluate RUN --split val` on its {images} validation images"
    )
    where = "out of fold" if folds else "on the validation split"
    lines = [
        f"# Levers on the ELPV default, {where} (test not read)",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}; {at_once} (wall_min is that run's).",
        "",
        f"Each row is `transferkit fit FLAGS` (seed 0), {scored}. `accuracy_half_ci`: half the 95 % "
        "interval of the 4-class accuracy (another draw of those images). `recall_p1`: the share "
        "of fully defective cells (p = 1) found.",
        "",
        "| lever | flags | " + " | ".join(keys) + " |",
        "| --- | --- |" + " ---: |" * len(keys),
    ]
    for row in rows:
        cells = [f"{row[key]:.4f}" for key in keys]
        lines.append(f"| {row['recipe']} | `{row['flags']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def invocations() -> dict[str, list[dict[str, str]]]:
    """Every invocation's rows as its results file holds them, by the file's name (the summary's aside)."""
    paths = sorted(RESULTS.glob(f"{NAME}*.csv"))
    return {path.stem: list(csv.DictReader(path.open())) for path in paths if path.stem != SUMMARY}


def commit_of(name: str) -> str:
    """The commit an invocation ran at, from the first line of its markdown that names one."""
    found = re.search(r"at commit (\w+)", (RESULTS / f"{name}.md").read_text())
    return found.group(1) if found else "?"


def compared(runs: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """Every row with its invocation, scoring and baseline: the default row it is set beside."""
    rows = []
    for name, levers in runs.items():
        own = next((row for row in levers if row["lever"] == "default"), None)
        other = BASELINES.get(name)
        defaults = eight_view_default() if other == EIGHT_VIEWS else runs.get(other or "", [])
        baseline = own or next((r for r in defaults if r["lever"] == "default"), None)
        for row in levers:
            out_of_fold = int(row["images"]) > 1000  # all 1,968 train images, against 197 validation ones
            rows.append(
                {
                    **row,
                    "invocation": name,
                    "commit": commit_of(name),
                    "scored": "out of fold" if out_of_fold else "validation",
                    "baseline": None if row is baseline else baseline,
                    "baseline_from": name if own else other,
                }
            )
    return sorted(rows, key=lambda row: row["scored"] != "out of fold")


def eight_view_default() -> list[dict[str, str]]:
    """The default's out-of-fold row with all 8 test-time views, as `EIGHT_VIEWS` holds it."""
    rows = csv.DictReader((RESULTS / f"{EIGHT_VIEWS}.csv").open())
    return [{**row, "lever": "default"} for row in rows if row["count"] == "8"]


def _difference(row: dict[str, Any], key: str) -> float | None:
    baseline = row["baseline"]
    return None if baseline is None else float(row[key]) - float(baseline[key])


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Every lever on the ELPV default so far (test not read)",
        "",
        "Command: `python benchmarks/elpv_levers.py --summary`: the rows of every results file "
        "`elpv_levers.py` wrote, unchanged, each beside the default's row it was measured with (its own "
        "invocation's, or the one `BASELINES` names where it ran none; after d4 runs averaged 8 test-time "
        "views, the default's fold models re-scored with 8 views, `elpv_test_views`). Validation: 197 "
        "images, ± about 6 "
        "points; out of fold: all 1,968 train images (`--folds 5`), ± about 1.8. A difference inside the "
        "lever's own interval (`± half CI`) is no evidence either way. Invocations ran at different "
        "commits and on different machines (each file says which), so compare a lever with its own "
        "baseline only. †: made while the frozen-layer cache fine-tuned 3 layer groups instead of 6 "
        "(benchmarks/README.md), the default's included.",
        "",
        "| lever | scored | binary | 4-class ± half CI | balanced | macro-F1 | recall p = 1 | Δ 4-class "
        "| Δ binary | wall (min) | invocation, commit | baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        gaps = [_difference(row, key) for key in ("accuracy", "binary_accuracy")]
        cells = [
            row["recipe"],
            row["scored"],
            f"{float(row['binary_accuracy']):.1%}",
            f"{float(row['accuracy']):.1%} ± {float(row['accuracy_half_ci']):.1%}",
            *(f"{float(row[key]):.1%}" for key in ("balanced_accuracy", "macro_f1", "recall_p1")),
            *("" if gap is None else f"{100 * gap:+.1f}" for gap in gaps),
            f"{float(row['wall_min']):.1f}",
            f"[{row['invocation']}]({row['invocation']}.md){'†' * (row['invocation'] in NARROW)}, "
            f"{row['commit']}",
            "(baseline)" if row["baseline"] is None else f"default of {row['baseline_from']}",
        ]
        lines.append("| " + " | ".join(cells).replace("%", " %") + " |")
    return "\n".join(lines) + "\n"


def summary_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Each lever's 4-class accuracy minus its baseline's, with the lever's 95 % interval, by scoring."""
    from matplotlib.figure import Figure

    levers = [row for row in rows if row["baseline"] is not None]
    figure = Figure(figsize=(8, 0.35 * len(levers) + 1.2), dpi=110)
    axes = figure.add_subplot()
    for place, row in enumerate(reversed(levers)):
        gap, half = 100 * (_difference(row, "accuracy") or 0.0), 100 * float(row["accuracy_half_ci"])
        colour = "#2a7" if row["scored"] == "out of fold" else "#888"
        axes.errorbar(gap, place, xerr=half, fmt="o", color=colour, capsize=3)
    names = [f"{r['lever']}, {r['invocation'].removeprefix(NAME + '_') or NAME}" for r in reversed(levers)]
    axes.set_yticks(range(len(levers)), names)
    axes.axvline(0, color="k", linewidth=0.8)
    axes.set_xlabel("4-class accuracy minus its default's (points), ± the lever's 95 % interval")
    axes.set_title("green: out of fold (1,968 images); grey: validation (197 images)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def write_summary() -> None:
    rows = compared(invocations())
    (RESULTS / f"{SUMMARY}.md").write_text(summary_markdown(rows))
    summary_plot(rows, RESULTS / f"{SUMMARY}.png")
    print((RESULTS / f"{SUMMARY}.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-levers"))
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--jobs", type=int, default=1, help="levers run at once (sharing the cores)")
    parser.add_argument(
        "--folds",
        type=int,
        help="score out of fold with K-fold cross-validation (K fits' time), not on validation",
    )
    parser.add_argument("--summary", action="store_true", help="tabulate every lever measured; run nothing")
    parser.add_argument("extra", nargs="*", help="flags for every `transferkit fit`, after --")
    args = parser.parse_args()
    if args.summary:
        return write_summary()
    if args.folds is not None and args.folds < 2:
        parser.error("--folds needs at least 2 folds")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = _threads(args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = [
            pool.submit(measure, lever, args.out, args.extra, threads, args.folds) for lever in args.levers
        ]
        rows = []
        command = "python benchmarks/elpv_levers.py " + " ".join(sys.argv[1:])
        for run in runs:  # each lever's figures as soon as it finishes, the files rewritten with them
            rows.append(run.result())
            print(json.dumps(rows[-1]), flush=True)
            write_csv(args.name, rows, ["lever", "recipe", "flags", "images", *KEYS, *COSTS])
            (RESULTS / f"{args.name}.md").write_text(markdown(rows, command.strip(), args.jobs, args.folds))
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
