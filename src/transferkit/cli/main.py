"""The `transferkit` command: parse arguments, call the public API, print. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from transferkit.api import fit
from transferkit.config import SHORTCUTS, parse_override, resolve_config
from transferkit.errors import TransferkitError
from transferkit.strategies import strategies
from transferkit.transforms import augment_presets

console = Console(stderr=True)


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
        "--model", help="model: efficientnet_lite0 (packaged), timm:<architecture>, or run:<run directory>"
    )
    fit.add_argument("--arch", help="timm architecture of a file: weights file, e.g. resnet18")
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
    return parser


def run_fit(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key, None) for key in SHORTCUTS}
    options = {key: value for key, value in flags.items() if value is not None}  # flags given
    options.update(parse_override(text) for text in args.set)
    config = resolve_config(args.config, **options)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    run = fit(config)
    console.print(summary_table(run.headline, run.wall_time_s))
    print(f"report: {run.paths.report_html}")
    print(f"model:  {run.paths.model}")
    return 0


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
        return run_fit(args)
    except TransferkitError as err:
        console.print(f"[bold red]error:[/] {err}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
