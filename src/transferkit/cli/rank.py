"""`transferkit rank`: parse, call the ranking API, print the table; no logic of its own."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.cli.tables import compact_table
from transferkit.config import CROP_SETTINGS

if TYPE_CHECKING:
    from transferkit.ranking import Ranking

console = Console(stderr=True)
stdout = Console()


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `rank` subcommand to the `transferkit` parser."""
    rank = commands.add_parser(
        "rank",
        help="which pretrained model to start from: transferability scores from one forward pass each",
        description="Extracts each model's features once on the labeled training images (cached on disk) "
        "and scores them: LogME and H-score on the features, LEEP and NCE on the model's own class "
        "predictions. Higher is better. Writes ranking.json, ranking.csv and ranking.png.",
    )
    rank.add_argument("--data", required=True, help="dataset, as fit --data takes it")
    rank.add_argument(
        "--models",
        action="append",
        metavar="SPEC[,SPEC...]",
        help="candidate models, comma-separated or repeated: any fit --model spec; auto (the default): "
        "the packaged models, and those a run: spec beside it descends from, as fit --model auto",
    )
    rank.add_argument(
        "--method",
        default="all",
        help="logme, hscore, knn, sfda, leep, nce, a comma-separated list, or all (default)",
    )
    rank.add_argument(
        "--race",
        action="store_true",
        help="second opinion: validation accuracy of a logistic-regression head on the cached features",
    )
    rank.add_argument("--image-size", type=int, help="input size in px (default: what each model expects)")
    rank.add_argument(
        "--crop",
        choices=CROP_SETTINGS,
        default="auto",
        help="how an image becomes the square input, as fit --crop takes it (default: auto)",
    )
    rank.add_argument(
        "--crop-pct", type=float, help="the share of the side the crop keeps, as fit --crop-pct takes it"
    )
    rank.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    rank.add_argument("--subset", type=int, help="a stratified random subset of this many images")
    rank.add_argument("--no-cache", dest="cache", action="store_false", help="neither read nor write caches")
    rank.add_argument("--json", action="store_true", help="print the ranking as JSON instead of a table")
    rank.add_argument("--out", default="rankings", help="folder for the ranking's files (default: rankings)")


def run_rank(args: argparse.Namespace) -> int:
    from transferkit.api.model_choice import candidate_specs
    from transferkit.config import DataConfig
    from transferkit.ranking import create_ranking_dir, rank, write_ranking

    ranking = rank(
        DataConfig(name=args.data, subset=args.subset),
        candidate_specs(",".join(args.models or ["auto"])),
        [name.strip() for name in args.method.split(",")],
        race=args.race,
        image_size=args.image_size,
        batch_size=args.batch_size,
        cache=args.cache,
        crop=args.crop,
        crop_pct=args.crop_pct,
    )
    paths = write_ranking(ranking, create_ranking_dir(args.out, args.data))
    if args.json:
        print(json.dumps(ranking.to_dict(), indent=2))
    else:
        stdout.print(ranking_table(ranking))
        for note in ranking.notes:
            stdout.print(f"[yellow]note:[/] {escape(note)}")
    for path in paths:
        console.print(f"wrote {path}")
    return 0


def ranking_table(ranking: Ranking) -> Table:
    """The candidates best first, in 80 columns with the six default scores: model names whole, rules
    only under the header, scores to three decimals."""
    race = ranking.num_val_images > 0
    table = compact_table(
        f"transferability to {ranking.data}: {ranking.num_images} training images, "
        f"ordered by {ranking.primary} ({ranking.wall_time_s:.0f} s)",
        "higher is better for every score; img/s: forward passes to the features on this machine",
        tight=True,
    )
    table.add_column("#", justify="right")
    table.add_column("model", no_wrap=True)
    for column in ("params", "img/s", *ranking.methods, *(["race val acc"] if race else [])):
        table.add_column(column, justify="right")
    for place, result in enumerate(ranking.candidates, start=1):
        scores = [_score(result.scores[name]) for name in ranking.methods]
        accuracy = [_percent(result.race_accuracy)] if race else []
        table.add_row(
            str(place),
            escape(result.label),
            f"{result.parameters / 1e6:.1f} M",
            f"{result.images_per_second:.0f}",
            *scores,
            *accuracy,
        )
    return table


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
