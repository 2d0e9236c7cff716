"""Active learning, simulated: how many labels each selection method needs to match random selection.

Labels are hidden and revealed as the loop asks. Each dataset is split once into a pool and a fixed test
split (ELPV: the Deitsch 2019 split, 1,968 / 656; digits: 1,297 / 500, stratified, seed 0). The packaged
EfficientNet-Lite0's features of every image are computed once (the feature cache of `rank` and
`suggest`), and each round is what `transferkit suggest` does with a fitted run: the model is a
logistic-regression head on the frozen features (`fit`'s linear probe: L-BFGS, L2 1e-3), its class
probabilities on the pool and the L2-normalised features go to `transferkit.active.select`, and the
picked labels are revealed. The loop starts from 2 random labels per class (the same for every method of
a seed) and runs to 300 labels in rounds of 20; the test accuracy after each round is the budget curve.

    python benchmarks/active.py --datasets digits
    python benchmarks/active.py --datasets digits elpv elpv:binary

The summary gives, per method, the fewest labels at which its mean curve (over seeds) reaches random
selection's mean accuracy at 200 labels (linear interpolation between rounds; "not reached" when it does
not by 300).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from default_fit import RESULTS, _cpu, _source_state, write_csv
from transferkit.active import select, selection_methods
from transferkit.active.selection import SelectionInputs, l2_normalised
from transferkit.config import DataConfig
from transferkit.data.cache import DiskCache, decode_splits
from transferkit.data.load import load_source
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits, stratified_split
from transferkit.models import resolve_model
from transferkit.ranking import FeatureCache, cached_features
from transferkit.training.features import fit_linear_head
from transferkit.transforms import Normalize

MODEL = "efficientnet_lite0"
IMAGE_SIZE = {"digits": 64, "elpv": 224, "elpv:binary": 224}  # digits: 8 x 8 images, as small_validation
DIGITS_TEST = 500
INITIAL_PER_CLASS = 2
ROUND = 20
MAX_LABELS = 300
REFERENCE_LABELS = 200  # random selection's accuracy here is the target
PROBE_L2 = 1e-3  # fit's head without a validation split (training/head.py DEFAULT_L2)


@dataclass(frozen=True)
class Task:
    """A dataset's frozen features, split into pool and test, with its hidden labels."""

    name: str
    pool: torch.Tensor
    pool_labels: np.ndarray
    test: torch.Tensor
    test_labels: np.ndarray
    classes: int


def load_task(name: str) -> Task:
    source = load_source(DataConfig(name=name))
    pool, test = _pool_and_test(source)
    backbone = resolve_model(MODEL)
    backbone.preprocessing = backbone.preprocessing.resized(IMAGE_SIZE[name])
    decoded = decode_splits(source, Splits(pool, [], test), backbone.preprocessing, DiskCache.default())
    normalize = Normalize(backbone.preprocessing)
    features = {
        split: cached_features(backbone, normalize, decoded[split].images, FeatureCache.default()).features
        for split in ("train", "test")
    }
    labels = {split: decoded[split].labels.numpy() for split in ("train", "test")}
    return Task(
        name, features["train"], labels["train"], features["test"], labels["test"], len(source.class_names)
    )


def _pool_and_test(source: ImageSource) -> tuple[list[int], list[int]]:
    if any(record.split == "test" for record in source.records):  # ELPV: the paper's split
        pool = [i for i, record in enumerate(source.records) if record.split != "test"]
        return pool, [i for i, record in enumerate(source.records) if record.split == "test"]
    everything = list(range(len(source.records)))
    pool, test = stratified_split(source, everything, DIGITS_TEST / len(everything), seed=0)
    return sorted(pool), sorted(test)


def probe(task: Task, labelled: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.from_numpy(task.pool_labels[labelled]).long()
    return fit_linear_head(task.pool[labelled], labels, task.classes, PROBE_L2)


def accuracy(task: Task, head: tuple[torch.Tensor, torch.Tensor]) -> float:
    predicted = (task.test @ head[0].T + head[1]).argmax(1).numpy()
    return float((predicted == task.test_labels).mean())


def initial_labels(task: Task, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.choice(np.flatnonzero(task.pool_labels == label), INITIAL_PER_CLASS, replace=False)
            for label in range(task.classes)
        ]
    )


def simulate(task: Task, method: str, seed: int, normalised: np.ndarray) -> list[dict[str, Any]]:
    """One budget curve: fit, score the pool, select, reveal; until `MAX_LABELS`."""
    labelled = initial_labels(task, seed)
    rows = []
    while True:
        head = probe(task, labelled)
        rows.append({"labels": len(labelled), "accuracy": accuracy(task, head)})
        if len(labelled) >= MAX_LABELS:
            return rows
        budget = min((len(labelled) // ROUND + 1) * ROUND, MAX_LABELS) - len(labelled)
        rest = np.setdiff1d(np.arange(len(task.pool)), labelled)
        logits = task.pool[rest] @ head[0].T + head[1]
        inputs = SelectionInputs(
            normalised[rest], normalised[labelled], torch.softmax(logits, 1).numpy().astype(np.float64)
        )
        started = time.perf_counter()
        picks = select(method, inputs, budget, seed=seed * 1000 + len(labelled))
        rows[-1]["select_s"] = time.perf_counter() - started
        labelled = np.concatenate([labelled, rest[picks.indices]])


def one_thread(simulate_: Any, *args: Any) -> Any:
    """Runs on one thread: the probe and the selection work on small matrices, where thread start-up and
    contention with other jobs on a shared 2-core machine cost up to 50x the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return simulate_(*args)
    finally:
        torch.set_num_threads(threads)


def labels_to_reach(curve: dict[int, float], target: float) -> float | None:
    """The label count where a mean curve first reaches `target`, interpolated between rounds."""
    points = sorted(curve.items())
    for (before, low), (after, high) in itertools.pairwise(points):
        if low >= target:
            return float(before)
        if high >= target:
            return before + (after - before) * (target - low) / (high - low)
    return float(points[-1][0]) if points[-1][1] >= target else None


def mean_curves(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, float]]:
    grouped: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in rows:
        grouped.setdefault((row["dataset"], row["method"]), {}).setdefault(row["labels"], []).append(
            row["accuracy"]
        )
    return {key: {n: statistics.mean(v) for n, v in curve.items()} for key, curve in grouped.items()}


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    curves = mean_curves(rows)
    out = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        target = curves[(dataset, "random")][REFERENCE_LABELS]
        for (name, method), curve in curves.items():
            if name != dataset:
                continue
            needed = labels_to_reach(curve, target)
            times = [
                r["select_s"]
                for r in rows
                if r["dataset"] == name and r["method"] == method and "select_s" in r
            ]
            out.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "random_at_200": target,
                    "accuracy_at_200": curve[REFERENCE_LABELS],
                    "accuracy_at_300": curve[MAX_LABELS],
                    "labels_to_match": needed,
                    "saving": None if needed is None else 1 - needed / REFERENCE_LABELS,
                    "select_s": statistics.mean(times),
                }
            )
    return out


def markdown(rows: list[dict[str, Any]], command: str, seeds: list[int]) -> str:
    summaries = summary_rows(rows)
    lines = [
        "# Active learning: labels needed to match random selection at 200 labels",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}.",
        f"Packaged {MODEL} features (digits at {IMAGE_SIZE['digits']} px, ELPV at {IMAGE_SIZE['elpv']} px), "
        f"linear probe (L-BFGS, L2 {PROBE_L2}); {INITIAL_PER_CLASS} random labels per class to start, rounds "
        f"of {ROUND} to {MAX_LABELS}; mean of seeds {', '.join(map(str, seeds))}; accuracy on the fixed test "
        "split.",
        "",
        "| dataset | method | acc. at 200 | acc. at 300 | labels to reach random@200 | fewer labels "
        "| select s/round |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summaries:
        needed = "not reached" if row["labels_to_match"] is None else f"{row['labels_to_match']:.0f}"
        saving = "" if row["saving"] is None else f"{100 * row['saving']:.0f} %"
        lines.append(
            f"| {row['dataset']} | {row['method']} | {100 * row['accuracy_at_200']:.1f} % | "
            f"{100 * row['accuracy_at_300']:.1f} % | {needed} | {saving} | {row['select_s']:.2f} |"
        )
    lines += ["", "## Whole curves (mean test accuracy, %, by labels)", ""]
    curves = mean_curves(rows)
    counts = sorted({row["labels"] for row in rows if row["labels"] % ROUND == 0})
    lines += [
        "| dataset | method | " + " | ".join(map(str, counts)) + " |",
        "| --- | --- |" + " ---: |" * len(counts),
    ]
    for (dataset, method), curve in curves.items():
        cells = " | ".join(f"{100 * curve[n]:.1f}" if n in curve else "" for n in counts)
        lines.append(f"| {dataset} | {method} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    figure = Figure(figsize=(5 * len(datasets), 4.2), dpi=110)
    for place, dataset in enumerate(datasets, start=1):
        axes = figure.add_subplot(1, len(datasets), place)
        for method in dict.fromkeys(row["method"] for row in rows):
            by_labels: dict[int, list[float]] = {}
            for row in rows:
                if row["dataset"] == dataset and row["method"] == method:
                    by_labels.setdefault(row["labels"], []).append(row["accuracy"])
            counts = sorted(by_labels)
            means = np.array([statistics.mean(by_labels[n]) for n in counts])
            spread = np.array([statistics.pstdev(by_labels[n]) for n in counts])
            colour = "k" if method == "random" else None  # the baseline: black and dashed
            axes.plot(counts, means, label=method, color=colour, linestyle="--" if colour else "-")
            axes.fill_between(counts, means - spread, means + spread, alpha=0.12, color=colour)
        axes.axvline(REFERENCE_LABELS, color="#999", linewidth=0.8)
        axes.set_title(dataset)
        axes.set_xlabel("labels")
        axes.set_ylabel("test accuracy")
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["digits", "elpv", "elpv:binary"], choices=list(IMAGE_SIZE)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(selection_methods))
    parser.add_argument("--name", default="active", help="results/<name>.{csv,md,png}")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        started = time.perf_counter()
        task = load_task(dataset)
        print(
            f"{dataset}: {len(task.pool)} pool, {len(task.test)} test, "
            f"features in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        normalised = l2_normalised(task.pool.numpy())
        for method in args.methods:
            for seed in args.seeds:
                curve = one_thread(simulate, task, method, seed, normalised)
                rows += [{"dataset": dataset, "method": method, "seed": seed, **point} for point in curve]
                at = {point["labels"]: point["accuracy"] for point in curve}
                print(f"  {method} seed {seed}: 200 labels {at.get(200, float('nan')):.4f}", flush=True)
    command = " ".join(["python benchmarks/active.py", *sys.argv[1:]])
    write_csv(args.name, rows, ["dataset", "method", "seed", "labels", "accuracy", "select_s"])
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, command, args.seeds))
    plot(rows, RESULTS / f"{args.name}.png")
    print(markdown(rows, command, args.seeds))


if __name__ == "__main__":
    main()
