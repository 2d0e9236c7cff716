"""A chained start against its ImageNet ancestor, over many draws of the few labeled images.

The chained task of `few_labels.py`: digits 5-9 at 64 px, starting either from the packaged
EfficientNet-Lite0 (ImageNet) or from a default fit of it on digits 0-4 with every label (the
"cat-vs-dog model adapted to other animals" case). `few_labels.py` measures whole fits on one draw of
labeled images (`data.split_seed` 0); with 5 labels per class one draw is a handful of images, so this
benchmark asks the same question over `--draws` draws (split seeds 0 .. N-1), on frozen features
computed once per start:

- the test accuracy of a linear head (the fit's head, `fit_linear_head`) on each start's features: at
  these budgets the default often keeps that head (WiSE-FT α 0), and it is what the start brings;
- the start `fit --model auto,run:SOURCE` keeps: the named chained run is the reference and the
  ImageNet ancestor replaces it only when its leave-one-out kNN votes on the labeled images beat the
  run's by more than one standard error (`api.model_choice.Evidence`);
- for comparison, the same rule on out-of-fold logistic-regression votes (5 folds) instead of kNN.

    python benchmarks/start_choice.py --draws 10
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from default_fit import RESULTS, _cpu, _source_state, run_fit, write_csv
from few_labels import DIGITS_AS_SOURCE, SPLIT_SEED, write_digit_manifests
from transferkit.api.model_choice import Evidence
from transferkit.config import DataConfig
from transferkit.data.cache import decode_splits
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.models import resolve_model
from transferkit.ranking.knn import knn_correct
from transferkit.training.features import extract_feature_sets, fit_linear_head
from transferkit.training.semi.pseudo_label import L2, head_accuracy
from transferkit.transforms.normalize import Normalize

IMAGE_SIZE, BUDGETS, FOLDS = 64, (5, 10, 25), 5
IMAGENET, CHAINED = "imagenet", "chained"


def source_run(out: Path, data: Path) -> Path:
    """The chained start: the default recipe on digits 0-4, every label, seed 0 (as few_labels.py)."""
    arguments = ["--data", str(data), "--seed", "0", "--set", f"data.split_seed={SPLIT_SEED}"]
    arguments += ["--image-size", str(IMAGE_SIZE), *DIGITS_AS_SOURCE, "--out", str(out)]
    out.mkdir(parents=True, exist_ok=True)
    return run_fit(arguments, log=out / "fit.log").run_dir


def start_features(spec: str, source: ImageSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features and class indices of every image of `source`, through the start `spec`."""
    backbone = resolve_model(spec, pretrained=True)
    backbone.preprocessing = backbone.preprocessing.resized(IMAGE_SIZE)
    decoded = decode_splits(source, Splits(list(range(len(source.records))), [], []), backbone.preprocessing)
    train = decoded["train"]
    return extract_feature_sets(backbone, Normalize(backbone.preprocessing), [train.images])[0], train.labels


def out_of_fold_correct(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[bool]:
    """Whether the linear head trained on the other folds classifies each image right."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    right = torch.zeros(len(labels), dtype=torch.bool)
    for held in (order[fold::FOLDS] for fold in range(FOLDS)):
        kept = torch.ones(len(labels), dtype=torch.bool)
        kept[held] = False
        weight, bias = fit_linear_head(features[kept], labels[kept], num_classes, L2)
        right[held] = (features[held] @ weight.T + bias).argmax(1) == labels[held]
    return right.tolist()


def measure_draw(
    data: DataConfig,
    source: ImageSource,
    starts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    budget: int,
    split_seed: int,
) -> dict[str, Any]:
    """One draw of `budget` labeled images per class: each start's linear-probe test accuracy, and the
    start each rule keeps."""
    splits = split_with_budget(source, replace(data, split_seed=split_seed, labels_per_class=budget))
    labeled, test = torch.tensor(sorted(splits.train + splits.val)), torch.tensor(splits.test)
    num_classes = len(source.class_names)
    row: dict[str, Any] = {"labels_per_class": budget, "split_seed": split_seed, "labeled": len(labeled)}
    votes: dict[str, dict[str, list[bool]]] = {"knn": {}, "oof": {}}
    for name, (features, labels) in starts.items():
        x, y = features[labeled], labels[labeled]
        head = fit_linear_head(x, y, num_classes, L2)
        row[f"test_{name}"] = head_accuracy(*head, features[test], labels[test])
        votes["knn"][name] = knn_correct(x.numpy(), y.numpy()).tolist()
        votes["oof"][name] = out_of_fold_correct(x, y, num_classes)
    for rule, right in votes.items():
        evidence = Evidence.of_votes(IMAGENET, right[IMAGENET], CHAINED, right[CHAINED])
        row[f"{rule}_gain"], row[f"{rule}_standard_error"] = evidence.gain, evidence.standard_error
        row[f"{rule}_keeps"] = IMAGENET if evidence.clear else CHAINED
    return row


def markdown(rows: list[dict[str, Any]], command: str, source: Path) -> str:
    lines = [
        "# A chained start against its ImageNet ancestor, over draws of the labeled images",
        "",
        f"Command: `{command}` at {_source_state()}. Machine: {_cpu()}.",
        "",
        f"Task: digits 5-9 at {IMAGE_SIZE} px; chained start: {source.name}, a default fit of the packaged "
        "Lite0 on digits 0-4 with every label; each draw is one `data.split_seed` (its labeled images, "
        "train and validation together, and the rest as test). Test accuracy of a linear head on each "
        "start's frozen features, mean over draws; `auto keeps` is the start `--model auto,run:SOURCE` "
        "keeps (kNN votes, the run as reference, the ancestor only when more than one standard error "
        "better); `out-of-fold keeps` the same rule on 5-fold logistic-regression votes.",
        "",
        "| labels per class | draws | ImageNet | chained | chained − ImageNet (points) "
        "| draws chained > 1 point below | better of the two per draw | auto keeps (ImageNet chosen) "
        "| out-of-fold keeps (ImageNet chosen) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for budget in sorted({row["labels_per_class"] for row in rows}):
        cell = [row for row in rows if row["labels_per_class"] == budget]
        imagenet, chained = _mean(cell, f"test_{IMAGENET}"), _mean(cell, f"test_{CHAINED}")
        below = sum(row[f"test_{CHAINED}"] < row[f"test_{IMAGENET}"] - 0.01 for row in cell)
        better = statistics.fmean(max(row[f"test_{IMAGENET}"], row[f"test_{CHAINED}"]) for row in cell)
        lines.append(
            f"| {budget} | {len(cell)} | {imagenet:.2%} | {chained:.2%} | {100 * (chained - imagenet):+.2f} "
            f"| {below} | {better:.2%} | {_kept(cell, 'knn')} | {_kept(cell, 'oof')} |"
        )
    return "\n".join(lines) + "\n"


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(row[key] for row in rows)


def _kept(rows: list[dict[str, Any]], rule: str) -> str:
    """The mean test accuracy of the start a rule keeps, and how often it chose the ancestor."""
    accuracy = statistics.fmean(row[f"test_{row[f'{rule}_keeps']}"] for row in rows)
    switched = sum(row[f"{rule}_keeps"] == IMAGENET for row in rows)
    return f"{accuracy:.2%} ({switched})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10, help="split seeds 0 .. draws-1 per budget")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-start-choice"))
    parser.add_argument("--name", default="start_choice")
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/start_choice.py", *sys.argv[1:]])
    manifests = write_digit_manifests(args.out / "data")
    run = source_run(args.out / "source", manifests["digits-0-4.csv"])
    data = DataConfig(name=str(manifests["digits-5-9.csv"]), channels=1)
    source = load_source(data)
    starts = {
        name: start_features(spec, source)
        for name, spec in ((IMAGENET, "efficientnet_lite0"), (CHAINED, f"run:{run}"))
    }
    rows = []
    for budget in args.budgets:
        for split_seed in range(args.draws):
            rows.append(measure_draw(data, source, starts, budget, split_seed))
            print(f"{budget} per class, draw {split_seed}: {rows[-1]}", flush=True)
    write_csv(args.name, rows)
    text = markdown(rows, command, run)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
