"""Few labels plus an unlabeled pool: labeled-only against each `--semi` method, and fully labeled.

Reports, per dataset and label budget, how much of the gap between labeled-only and fully labeled
training the semi-supervised run recovers. Each run is its own process (`default_fit.run_seed`).
Quick version (one seed; linear-probe runs, then 2 epochs of fine-tuning with each method on digits,
ELPV with 10 % of the labels or 25 per class, and ELPV binary with 10 per class):

    python benchmarks/semi.py --seeds 0

Full version: ``--seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

from default_fit import RESULTS, _commit, _cpu, run_fit, test_sampling, write_csv

DIGITS = ["--data", "digits", "--image-size", "96"]
ELPV = ["--data", "elpv"]
PROBE = ["--strategy", "linear-probe"]
FINE_TUNE = ["--strategy", "fine-tune", "--epochs", "2"]

# (dataset, budget, method, flags); "full" uses every train label
SETTINGS = [
    *[
        (name, budget, method, [*data, *PROBE, *extra])
        for name, data, budgets in [
            ("digits", DIGITS, [("10 per class", ["--labels-per-class", "10"])]),
            (
                "elpv",
                ELPV,
                [("10 %", ["--label-fraction", "0.1"]), ("25 per class", ["--labels-per-class", "25"])],
            ),
        ]
        for budget, limit in budgets
        for method, extra in [
            ("labeled only", limit),
            ("pseudo-label", [*limit, "--semi", "pseudo-label"]),
            ("fully labeled", []),
        ]
    ],
    *[
        (name, budget, f"{method}, fine-tune", [*data, *FINE_TUNE, *extra])
        for name, data, budget, limit in [
            ("digits", DIGITS, "10 per class", ["--labels-per-class", "10"]),
            ("elpv", ELPV, "10 %", ["--label-fraction", "0.1"]),
            ("elpv", ELPV, "25 per class", ["--labels-per-class", "25"]),
            ("elpv-binary", ["--data", "elpv:binary"], "10 per class", ["--labels-per-class", "10"]),
        ]
        for method, extra in [
            ("labeled only", limit),
            ("pseudo-label", [*limit, "--semi", "pseudo-label"]),
            ("fixmatch", [*limit, "--semi", "fixmatch"]),
            ("flexmatch", [*limit, "--semi", "flexmatch"]),
            ("self-training", [*limit, "--semi", "self-training"]),
            ("self-training 0.9", [*limit, "--semi", "self-training", "--set", "train.semi.threshold=0.9"]),
            ("fully labeled", []),
        ]
    ],
    # the default recipe, as the README's example runs it
    *[
        ("digits", "10 per class", f"{method}, default", [*DIGITS, *extra])
        for method, extra in [
            ("labeled only", ["--labels-per-class", "10"]),
            ("pseudo-label", ["--labels-per-class", "10", "--semi", "pseudo-label"]),
            ("fully labeled", []),
        ]
    ],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-semi"))
    parser.add_argument("--budgets", nargs="+", help="only these label budgets, e.g. '10 %%' '10 per class'")
    parser.add_argument("--datasets", nargs="+", help="only these datasets: digits, elpv, elpv-binary")
    parser.add_argument("--methods", nargs="+", help="only these methods, e.g. 'pseudo-label, fine-tune'")
    parser.add_argument("--name", default="semi", help="results/NAME.{csv,md}; a partial run gets its own")
    parser.add_argument(
        "--earlier",
        metavar="NAME",
        help="results/NAME.csv of an earlier run (other seeds, the same code): its rows join this run's in "
        "the table",
    )
    parser.add_argument(
        "--baselines",
        metavar="NAME",
        nargs="+",
        default=[],
        help="results/NAME.csv of earlier runs: their labeled-only and fully-labeled rows (the gap's two "
        "ends, which no --semi method changes) join this run's in the table",
    )
    args = parser.parse_args()
    rows = read_rows(RESULTS / f"{args.earlier}.csv") if args.earlier else []
    rows += [row for name in args.baselines for row in read_rows(RESULTS / f"{name}.csv") if is_baseline(row)]
    chosen = [
        (dataset, budget, method, flags)
        for dataset, budget, method, flags in SETTINGS
        if (not args.budgets or budget in args.budgets)
        and (not args.datasets or dataset in args.datasets)
        and (not args.methods or method in args.methods)
    ]
    if not chosen:
        settings = sorted({f"{dataset} '{budget}'" for dataset, budget, _, _ in SETTINGS})
        parser.error(
            f"no setting matches --datasets, --budgets and --methods; the settings: {', '.join(settings)}"
        )
    for dataset, budget, method, flags in chosen:
        for seed in args.seeds:
            out = args.out / f"{dataset}-{budget}-{method}".replace(" ", "_").replace("%", "pct") / str(seed)
            fit = run_fit(["--seed", str(seed), "--out", str(out), *flags])
            rows.append(
                {
                    "dataset": dataset,
                    "budget": budget,
                    "method": method,
                    "seed": seed,
                    **fit.metrics["headline"],
                    **test_sampling(fit.metrics["test"]),
                    "out_of_fold_accuracy": out_of_fold_accuracy(fit.metrics),
                    "wall_min": fit.wall_s / 60,
                    "pool": pool_use(fit.run_dir, fit.metrics),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    write(rows, "python benchmarks/semi.py " + shlex.join(sys.argv[1:]), args.name)


def is_baseline(row: dict) -> bool:
    """Whether a row is one end of the gap: labeled only or fully labeled."""
    return row["method"].startswith(("labeled only", "fully labeled"))


def read_rows(path: Path) -> list[dict]:
    """The rows `write` put in a results CSV, numbers as numbers again."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["seed"] = int(row["seed"])
        for key in ("accuracy", "binary_accuracy", "out_of_fold_accuracy", "wall_min"):
            row[key] = float(row[key]) if row.get(key) else None
    return rows


def out_of_fold_accuracy(metrics: dict) -> float | None:
    """The accuracy of the fold models on the train images each did not see (None without
    cross-validation): what a choice between methods may read, unlike the test split."""
    cv = metrics.get("cv")
    return cv["out_of_fold"]["accuracy"] if cv else None


def pool_use(run_dir: Path, metrics: dict) -> str:
    """What the run made of the pool: the pseudo-label gate's decision (pseudo_labels.json), the
    self-training student against its teacher (metrics.json's pool), or the consistency targets per
    epoch (metrics.csv); "" for runs without a pool."""
    checked = metrics.get("pool")
    saved = run_dir / "pseudo_labels.json"
    chosen = json.loads(saved.read_text()) if saved.exists() else {}
    if checked is not None:  # self-training: the teacher against the student
        verdict = "used" if checked["used"] else "left out"
        measured = f"{checked['on']} {checked['without']:.1%} -> {checked['with_pool']:.1%}"
        labels = f", {len(chosen['positions'])} pseudo-labels" if chosen else ""
        right = f" ({chosen['accuracy']:.1%} right)" if chosen.get("accuracy") is not None else ""
        return f"{verdict} ({measured}){labels}{right}"
    if chosen:
        if "teacher_val_accuracy" in chosen:  # self-training before its pool check
            right = "" if chosen["accuracy"] is None else f", {chosen['accuracy']:.1%} right"
            return f"{len(chosen['positions'])} pseudo-labels{right}"
        gate = chosen.get("gate")
        if gate is None:
            return "used, ungated"
        verdict = "used" if gate["open"] else "left out"
        measured = f"{gate['without']:.1%} -> {gate['with_pool']:.1%}, SE {gate['standard_error']:.1%}"
        return f"{verdict} (gate {measured})"
    history = run_dir / "metrics.csv"
    if not history.exists():
        return ""
    with history.open() as rows:
        targets = [row["pseudo_labels"] for row in csv.DictReader(rows) if row.get("pseudo_labels")]
    return f"targets per epoch {' / '.join(targets)}" if targets else ""


def write(rows: list[dict], command: str, name: str = "semi") -> None:
    keys = ["accuracy", "binary_accuracy", "out_of_fold_accuracy", "wall_min", "pool"]
    write_csv(name, rows, ["dataset", "budget", "method", "seed", *keys])
    commit = os.environ.get("TRANSFERKIT_BENCH_COMMIT") or _commit()
    lines = [
        "# Semi-supervised learning from the unlabeled pool",
        "",
        f"Command: `{command}` at commit {commit}",
        "",
    ]
    lines += [
        "| dataset | labels | method | seeds | out-of-fold accuracy | test accuracy | binary accuracy "
        "| wall (min) | gap recovered | pool per seed |"
    ]
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups = dict.fromkeys((r["dataset"], r["budget"], r["method"]) for r in rows)
    for dataset, budget, method in groups:
        group = [r for r in rows if (r["dataset"], r["budget"], r["method"]) == (dataset, budget, method)]
        binary = [r["binary_accuracy"] for r in group if r.get("binary_accuracy") is not None]
        folds = [r["out_of_fold_accuracy"] for r in group if r.get("out_of_fold_accuracy") is not None]
        recovered = gap_recovered(rows, dataset, budget, method)
        share = "" if recovered is None else f"{recovered:.0%}"
        cells = [
            _mean_sd(folds) if folds else "n/a",
            _mean_sd([r["accuracy"] for r in group]),
            _mean_sd(binary) if binary else "n/a",
            f"{statistics.mean(r['wall_min'] for r in group):.1f}",
            share,
            "; ".join(r["pool"] for r in group if r["pool"]),
        ]
        lines.append(f"| {dataset} | {budget} | {method} | {len(group)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Strategy `linear-probe` unless the method says fine-tune; pseudo-label adds `--semi pseudo-label` "
        "(3 self-training rounds on frozen features, then the gate: 5 folds of the labeled images, a head "
        "with and without the pseudo-labels classifies each held-out fold; the pool per seed gives that "
        "out-of-fold accuracy without -> with, and whether the pool was used). The fine-tune rows train 2 "
        "epochs, the default rows run the default recipe; fixmatch and flexmatch add their consistency "
        "loss on the pool at every step (the pool per seed gives the confident targets in each epoch); "
        "self-training trains the same recipe on the "
        "labeled images first and adds its confident pool predictions as labels (at 0.8 confidence, or "
        "0.9 where the method says so), and keeps the pool only if the student beats its teacher out of "
        "fold or on validation (the pool per seed gives teacher -> student, then the final model's "
        "pseudo-labels: cross-validated, from the fold teachers' average). Out-of-fold "
        "accuracy: the run's fold models on the labeled images "
        "each did not see (runs whose validation split is small cross-validate; n/a otherwise), what a "
        "choice between methods may read. Gap recovered: (semi - "
        "labeled only) / (fully labeled - labeled only) test accuracy, of the same strategy. Each run is its "
        "own process; wall "
        f"times count the whole process. Machine: {_cpu()}; load average {os.getloadavg()[1]:.1f} "
        "(5 min) when written.",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def gap_recovered(rows: list[dict], dataset: str, budget: str, method: str) -> float | None:
    """(semi - labeled only) / (fully labeled - labeled only), each of the same strategy: a method
    "fixmatch, fine-tune" is set against "labeled only, fine-tune" and "fully labeled, fine-tune"."""
    name, _, strategy = method.partition(", ")
    if name in ("labeled only", "fully labeled"):
        return None
    suffix = f", {strategy}" if strategy else ""

    def mean(reference: str) -> float | None:
        accuracies = [
            r["accuracy"]
            for r in rows
            if (r["dataset"], r["budget"], r["method"]) == (dataset, budget, reference + suffix)
        ]
        return statistics.mean(accuracies) if accuracies else None

    semi, labeled, full = mean(name), mean("labeled only"), mean("fully labeled")
    if semi is None or labeled is None or full is None or full <= labeled:
        return None
    return (semi - labeled) / (full - labeled)


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


if __name__ == "__main__":
    main()
