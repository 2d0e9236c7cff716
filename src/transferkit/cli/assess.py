"""`transferkit evaluate` and `transferkit compare`: parse, call the evaluation API, print."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.catalog import BACKENDS, BACKENDS_HELP
from transferkit.cli.tables import compact_table
from transferkit.files import write_json

if TYPE_CHECKING:
    from transferkit.evaluation.compare import RunRow

console = Console(stderr=True)
stdout = Console()


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `evaluate` and `compare` subcommands to the `transferkit` parser."""
    evaluate = commands.add_parser(
        "evaluate",
        help="score a fine-tuned model on a labelled split, with 95 %% intervals",
        description="Without --data, rebuilds the run's own split from its config.yaml.",
    )
    evaluate.add_argument("model", metavar="RUN_OR_BUNDLE")
    evaluate.add_argument("--data", help="dataset spec (default: the run's own dataset)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    evaluate.add_argument(
        "--no-tta", dest="tta", action="store_false", help="the image alone, no test-time views"
    )
    evaluate.add_argument("--out", help="folder to write evaluation.json into")
    evaluate.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help=BACKENDS_HELP,
    )
    compare = commands.add_parser(
        "compare",
        help="compare finished runs: metrics, intervals, and which differences exceed the noise",
    )
    compare.add_argument("runs", metavar="RUN", nargs="+")
    compare.add_argument("--out", help="folder to write comparison.csv and comparison.png into")


def run_evaluate(args: argparse.Namespace) -> int:
    from transferkit.api.evaluate import evaluate

    result = evaluate(args.model, args.data, args.split, args.tta, backend=args.backend)
    stdout.print(
        metrics_table(result.metrics, f"{result.data}, {result.split} split ({len(result.paths)} images)")
    )
    for bad in result.skipped:
        console.print(f"skipped {bad.path}: {bad.reason}")
    if args.out:
        path = write_json(Path(args.out) / "evaluation.json", result.to_dict())
        print(f"evaluation: {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from transferkit.evaluation.compare import compare_runs, write_comparison

    rows = compare_runs(args.runs)
    stdout.print(comparison_table(rows))
    stdout.print(run_list(rows), soft_wrap=True, highlight=False)  # whole paths, to copy
    if args.out:
        for path in write_comparison(rows, Path(args.out)):
            print(f"wrote {path}")
    return 0


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95 % interval", justify="right")
    rows = [
        (name.replace("_", " "), metrics, name)
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "mae", "qwk")
    ]
    rows += [
        (f"{group} accuracy", grouped, "accuracy") for group, grouped in metrics.get("groupings", {}).items()
    ]
    for label, values, name in rows:
        if values.get(name) is not None:
            interval = values.get("intervals", {}).get(name)
            table.add_row(label, _format(name, values[name]), _format_interval(name, interval))
    return table


_SCORES = ("auroc", "mae", "qwk")  # not percentages


def _format(name: str, value: float) -> str:
    return f"{value:.3f}" if name in _SCORES else f"{100 * value:.2f} %"  # as the report shows them


def _format_interval(name: str, interval: list[float] | None) -> str:
    if not interval:
        return ""
    low, high = interval
    return f"[{low:.3f}, {high:.3f}]" if name in _SCORES else f"[{100 * low:.1f}, {100 * high:.1f}]"


def comparison_table(rows: list[RunRow]) -> Table:
    """One row per run, numbered as `run_list` names them; what every run shares (model, strategy,
    data) is said once below, so that the rest fits 80 columns."""
    described = {
        "model": [r.model for r in rows],
        "strategy": [r.strategy for r in rows],
        "data": [r.data for r in rows],
    }
    shared = [values[0] for values in described.values() if len(set(values)) == 1]
    differing = {name: values for name, values in described.items() if len(set(values)) > 1}
    table = compact_table(
        "runs against run 1, paired over their shared test images",
        f"every run: {escape(', '.join(shared))}" if shared else None,
    )
    table.add_column("#", justify="right")
    for name in differing:
        table.add_column(name, overflow="fold")
    for column in ("accuracy [95 %]", "Δ [95 %]", "", "wall"):
        table.add_column(column, no_wrap=True)
    for number, row in enumerate(rows, start=1):
        low, high = row.accuracy_interval
        accuracy = f"{100 * row.headline['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
        delta, verdict = "", ""
        if row.difference is not None:
            mean, d_low, d_high = row.difference
            delta = f"{100 * mean:+.1f} [{100 * d_low:+.1f}, {100 * d_high:+.1f}]"
            verdict = "beyond noise" if row.beyond_noise else "within noise"
        elif number > 1:
            delta = "no shared images"
        wall = f"{row.wall_time_s / 60:.1f} min" if row.wall_time_s else ""
        cells = [escape(_short(values[number - 1])) for values in differing.values()]
        table.add_row(str(number), *cells, accuracy, delta, verdict, wall)
    return table


def _short(description: str) -> str:
    """A dataset folder or manifest by its name (a run's config.yaml keeps the whole path)."""
    return Path(description).name if "/" in description and ":" not in description else description


def run_list(rows: list[RunRow]) -> str:
    """``1: runs/...`` for each run of `comparison_table`."""
    return "\n".join(f"{number}: {escape(row.run)}" for number, row in enumerate(rows, start=1))
