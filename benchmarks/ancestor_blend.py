"""A chained start blended with its ImageNet ancestor in weight space, against either end alone.

Does a blend keep features better than either end?

The chained task of `few_labels.py`: digits 5-9 at 64 px, starting from SOURCE, a default fit on digits
0-4. Every weight of the start but its old head is blended, θ = (1 - β) θ_ancestor + β θ_SOURCE, for β on
a grid (β = 0: the packaged ImageNet Lite0, β = 1: SOURCE); a logistic-regression head on each blend's
frozen features (what the default keeps where WiSE-FT chooses α = 0) is scored on the test split, for
several splits (``data.split_seed``: test and labeled images drawn anew), so the figure is not one draw's.

    python benchmarks/ancestor_blend.py                    # 10 draws of 5, 10 and 25 labels per class
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from default_fit import RESULTS, _commit, _cpu, write_csv
from few_labels import TASKS, Settings, source_run, write_digit_manifests
from transferkit.config import DataConfig
from transferkit.data import ImageSource
from transferkit.data.cache import decode_splits
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.splits import Splits
from transferkit.models import resolve_model
from transferkit.training.features import extract_feature_sets, fit_linear_head
from transferkit.training.interpolation import cloned, interpolate
from transferkit.training.semi.pseudo_label import L2, head_accuracy
from transferkit.transforms.normalize import Normalize

ANCESTOR = "efficientnet_lite0"
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
IMAGE_SIZE = 64


def blended_features(source_spec: str, source: ImageSource) -> tuple[dict[float, torch.Tensor], torch.Tensor]:
    """Pooled features of every image of `source` (centre view) through the blend at each of `BETAS`,
    and the images' labels; the images are decoded once."""
    backbone = resolve_model(source_spec)
    backbone.preprocessing = backbone.preprocessing.resized(IMAGE_SIZE)
    tuned = cloned(backbone.model.state_dict())
    ancestor = resolve_model(ANCESTOR).model.state_dict()
    # the old head's classes differ in shape from ImageNet's: it stays SOURCE's at every β
    start = {
        name: ancestor[name] if name in ancestor and ancestor[name].shape == value.shape else value
        for name, value in tuned.items()
    }
    every = Splits(list(range(len(source.records))), [], [])
    images = decode_splits(source, every, backbone.preprocessing)["train"]
    normalize = Normalize(backbone.preprocessing)
    features = {}
    for beta in BETAS:
        backbone.model.load_state_dict(interpolate(start, tuned, beta))
        features[beta] = extract_feature_sets(backbone, normalize, [images.images])[0]
    return features, images.labels


def probe_accuracies(
    features: dict[float, torch.Tensor],
    labels: torch.Tensor,
    source: ImageSource,
    data: DataConfig,
    *,
    budget: int,
    draws: int,
) -> list[dict[str, Any]]:
    """Test accuracy of a head on each blend's features, per split with `budget` labels per class."""
    classes = len(source.class_names)
    rows = []
    for draw in range(draws):
        config = dataclasses.replace(data, split_seed=draw, labels_per_class=budget)
        splits = split_with_budget(source, config)
        labeled, test = torch.tensor(sorted(splits.train + splits.val)), torch.tensor(splits.test)
        for beta, x in features.items():
            weight, bias = fit_linear_head(x[labeled], labels[labeled], classes, L2)
            accuracy = head_accuracy(weight, bias, x[test], labels[test])
            rows.append({"budget": budget, "draw": draw, "beta": beta, "accuracy": accuracy})
    return rows


def write_markdown(name: str, rows: list[dict[str, Any]], start: dict[str, Any], command: str) -> None:
    budgets = sorted({row["budget"] for row in rows})
    draws = len({row["draw"] for row in rows})
    lines = [
        "# A chained start blended with its ImageNet ancestor",
        "",
        f"Command: `{command}` at commit {_commit()}; {_cpu()}.",
        "",
        f"Chained task: digits 5-9 at {IMAGE_SIZE} px; SOURCE is the default fit on every digit 0-4 "
        f"({start['accuracy']:.2%} test accuracy there). θ = (1 - β) θ_ImageNet + β θ_SOURCE for every "
        "weight but the old head; a logistic-regression head on each blend's frozen features (centre view), "
        f"test accuracy on the split's test images, mean ± sd over {draws} splits (`data.split_seed` 0, 1, "
        "...: the test images and the labeled images drawn anew).",
        "",
        "| labels per class | "
        + " | ".join(f"β = {beta:g}" for beta in BETAS)
        + " | best blend − better end |",
        "| ---: | " + " | ".join("---:" for _ in BETAS) + " | ---: |",
    ]
    for budget in budgets:
        accuracies = {
            b: [r["accuracy"] for r in rows if (r["budget"], r["beta"]) == (budget, b)] for b in BETAS
        }
        means = {b: statistics.mean(values) for b, values in accuracies.items()}
        sds = {b: statistics.stdev(values) for b, values in accuracies.items()}
        cells = " | ".join(f"{100 * means[b]:.2f} ± {100 * sds[b]:.2f} %" for b in BETAS)
        blend = max(means[b] for b in BETAS[1:-1])
        lines.append(f"| {budget} | {cells} | {100 * (blend - max(means[0.0], means[1.0])):+.2f} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench-blend"),
        help="the data and SOURCE's run (kept for reuse)",
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 25], help="labels per class")
    parser.add_argument("--draws", type=int, default=10, help="splits per budget (data.split_seed 0, 1, ...)")
    parser.add_argument("--name", default="ancestor_blend", help="results/NAME.{csv,md}")
    args = parser.parse_args()
    if args.draws < 2:
        parser.error(
            f"--draws {args.draws}: the table gives a standard deviation over splits; give 2 or more"
        )
    task = TASKS["chained"]
    write_digit_manifests(args.out / "data")
    start = source_run(Settings(args.out, None, 0, None), task)
    data = DataConfig(name=str(args.out / "data" / task.data), channels=1)
    dataset = load_source(data)
    features, labels = blended_features(f"run:{start['run_dir']}", dataset)
    rows = [
        row
        for budget in args.budgets
        for row in probe_accuracies(features, labels, dataset, data, budget=budget, draws=args.draws)
    ]
    write_csv(args.name, rows)
    command = shlex.join(["python", "benchmarks/ancestor_blend.py", *sys.argv[1:]])
    write_markdown(args.name, rows, start, command)
    print(RESULTS / f"{args.name}.md")


if __name__ == "__main__":
    main()
