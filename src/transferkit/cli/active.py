"""`transferkit suggest` and `transferkit label`: parse, call the active-learning API, print.

Nothing heavy is imported at module level (torch, FastAPI): `transferkit --help` must stay fast.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.cli.tables import common_folder, compact_table, from_folder

if TYPE_CHECKING:
    from transferkit.active import Suggestions

console = Console(stderr=True)
stdout = Console()
METHODS = "margin, entropy, badge, coreset, typiclust, random"  # checked by the selection registry


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `suggest` and `label` to the `transferkit` parser."""
    _add_suggest(commands)
    _add_label(commands)


def _add_suggest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "suggest",
        help="which unlabelled images to label next: informative, diverse, never copies of labelled ones",
        description="Scores a pool of unlabelled images with a fitted run's model (or, without a run, a "
        "pretrained model's features for a cold start), picks BUDGET images that are uncertain and unlike "
        "each other, leaves out images already labelled and copies of the run's train, val or test images, "
        "and writes them as a manifest with the reason for each. Then: transferkit label OUT.",
    )
    parser.add_argument(
        "run_dir", nargs="?", metavar="RUN", help="run directory (or bundle); omit for a cold start"
    )
    parser.add_argument(
        "--pool", required=True, help="folder of unlabelled images, or a manifest with a path column"
    )
    parser.add_argument("--budget", type=int, default=20, help="images to pick (default 20)")
    parser.add_argument(
        "--method",
        help=f"{METHODS} (default: margin with a run, typiclust for a cold start)",
    )
    parser.add_argument(
        "--model",
        help="cold start only: pretrained model whose features are used (default efficientnet_lite0)",
    )
    parser.add_argument(
        "--labelled",
        action="append",
        default=[],
        metavar="FOLDER_OR_MANIFEST",
        help="images already labelled beyond the run's data (e.g. labels.csv); repeatable",
    )
    parser.add_argument("--out", default="to_label.csv", help="manifest to write (default to_label.csv)")
    parser.add_argument("--image-size", type=int, help="cold start only: input size in px")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="for badge, random and k-means (default 0)")
    parser.add_argument(
        "--no-cache", dest="cache", action="store_false", help="neither read nor write caches"
    )
    parser.set_defaults(run=run_suggest)


def _add_label(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "label",
        help="label images in the browser, one at a time, with keyboard shortcuts; writes labels.csv",
        description="Serves a page at http://127.0.0.1:PORT that shows each image of FOLDER_OR_MANIFEST "
        "(e.g. suggest's to_label.csv) with a button per class (keys 1..9 and class initials), skip (Space) "
        "and undo (Backspace). labels.csv is written after every answer; a restart resumes where it "
        "stopped. Then: transferkit fit --data labels.csv.",
    )
    parser.add_argument("pool", metavar="FOLDER_OR_MANIFEST", help="images to label")
    parser.add_argument(
        "--classes", help="comma-separated class names (default: the labels already in --out)"
    )
    parser.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default 8001)")
    parser.add_argument(
        "--out", default="labels.csv", help="labels file, kept and extended (default labels.csv)"
    )
    parser.set_defaults(run=run_label)


def run_suggest(args: argparse.Namespace) -> int:
    from transferkit.active import suggest

    result = suggest(
        args.run_dir,
        pool=args.pool,
        budget=args.budget,
        method=args.method,
        model=args.model,
        labelled=args.labelled,
        out=args.out,
        image_size=args.image_size,
        batch_size=args.batch_size,
        cache=args.cache,
        seed=args.seed,
    )
    stdout.print(suggestions_table(result))
    stdout.print(folders_line(result), soft_wrap=True, highlight=False)
    if result.excluded:
        reasons: dict[str, int] = {}
        for exclusion in result.excluded:
            kind = exclusion.reason.split(" of ")[0].split(" (")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        listed = ", ".join(f"{count} {kind}" for kind, count in reasons.items())
        console.print(f"left out of the pool: {escape(listed)}")
    console.print(f"wrote {result.out}; label them with: transferkit label {result.out}")
    return 0


def suggestions_table(result: Suggestions) -> Table:
    """The picks best first, each image from the pool's folder and its nearest labelled image from the
    labelled images' folder (`folders_line` names both)."""
    pool, labelled = _folders(result)
    table = compact_table(
        f"{len(result.picks)} of {result.pool_size} pool images by {result.method} "
        f"({result.model}, {result.labelled_size} labelled, {result.wall_time_s:.0f} s)"
    )
    for column in ("#", "image", result.score_name, "predicted", "nearest labelled", "distance"):
        table.add_column(column, overflow="fold", justify="right" if column in ("#", "distance") else "left")
    for pick in result.picks:
        predicted = f"{pick.predicted} ({pick.probability:.2f})" if pick.predicted else ""
        table.add_row(
            str(pick.rank),
            escape(from_folder(pick.path, pool)),
            "" if math.isnan(pick.score) else f"{pick.score:.3f}",
            escape(predicted),
            escape(from_folder(pick.nearest_labelled, labelled) if pick.nearest_labelled else ""),
            "" if math.isnan(pick.distance) else f"{pick.distance:.3f}",
        )
    return table


def folders_line(result: Suggestions) -> str:
    """Where the table's images lie: ``images in POOL; nearest labelled in FOLDER``."""
    pool, labelled = _folders(result)
    named = (("images", pool), ("nearest labelled", labelled))
    return "; ".join(f"{what} in {escape(folder)}" for what, folder in named if folder)


def _folders(result: Suggestions) -> tuple[str, str]:
    nearest = [pick.nearest_labelled for pick in result.picks if pick.nearest_labelled]
    return common_folder([pick.path for pick in result.picks]), common_folder(nearest)


def run_label(args: argparse.Namespace) -> int:
    from transferkit.errors import MissingDependencyError

    try:
        from transferkit.serve.labelling import HOST, create_session, serve_labelling
    except ImportError as err:
        raise MissingDependencyError("fastapi", "transferkit label (the serve extra)") from err
    classes = [name.strip() for name in args.classes.split(",") if name.strip()] if args.classes else None
    session = create_session(args.pool, classes, args.out)
    counts = session.counts()
    console.print(
        f"{counts['labelled']} of {counts['total']} images already labelled in {args.out}; "
        f"open http://{HOST}:{args.port} (Ctrl+C stops; every answer is already saved)"
    )
    serve_labelling(session, args.port)
    return 0
