"""Do the test metrics' 95 % intervals hold 95 % of the time? The bootstrap against the intervals used now.

Draws test sets of known true accuracy (or balanced accuracy) and counts how often each method's interval
holds the truth, and how wide it is. Accuracy: the percentile bootstrap against the Wilson score interval.
Balanced accuracy of a common and a rare class: the bootstrap against the bootstrap joined with the
posterior of the per-class recalls (`metrics.balanced_accuracy_posterior`).

    python benchmarks/interval_coverage.py --draws 400
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from default_fit import RESULTS, _commit, _cpu, write_csv
from transferkit.evaluation.metrics import BOOTSTRAP_RESAMPLES, compute_metrics
from transferkit.evaluation.metrics import _Bootstrap as Bootstrap
from transferkit.evaluation.metrics import _interval as percentile_interval
from transferkit.evaluation.metrics import _resampled_confusions as resampled_confusions
from transferkit.evaluation.metrics import _summaries as summaries

NAME = "interval_coverage"
ACCURACY_SETTINGS = [(images, accuracy) for images in (20, 50, 200) for accuracy in (0.8, 0.95, 0.99)]
COMMON = (200, 0.97)  # the common class: test images, recall
BALANCED_SETTINGS = [(rare, recall) for rare in (3, 10, 30) for recall in (0.7, 0.9, 1.0)]


def predictions(rng: np.random.Generator, counts: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and one-hot probabilities: per class (images, recall), each image right with that chance;
    a wrong one goes to the next class."""
    labels, predicted = [], []
    for label, (images, recall) in enumerate(counts):
        right = rng.random(images) < recall
        labels += [label] * images
        predicted += list(np.where(right, label, (label + 1) % len(counts)))
    return np.array(labels), np.eye(len(counts))[predicted]


def bootstrap_interval(labels: np.ndarray, probabilities: np.ndarray, metric: str, seed: int) -> list[float]:
    """The percentile bootstrap interval of one summary metric, as metrics.py drew them before."""
    predicted, classes = probabilities.argmax(axis=1), probabilities.shape[1]

    def statistic(draws: np.ndarray) -> np.ndarray:
        return summaries(resampled_confusions(labels, predicted, classes, draws))[metric][:, None]

    interval = percentile_interval(Bootstrap(len(labels), BOOTSTRAP_RESAMPLES, seed).apply(statistic)[:, 0])
    assert interval is not None
    return interval


def coverage(
    rng: np.random.Generator, counts: list[tuple[int, float]], metric: str, truth: float, draws: int
) -> dict[str, float]:
    """Share of `draws` test sets whose interval holds `truth`, and the median width, for both methods."""
    held: dict[str, list[bool]] = {"bootstrap": [], "now": []}
    widths: dict[str, list[float]] = {"bootstrap": [], "now": []}
    for seed in range(draws):
        labels, probabilities = predictions(rng, counts)
        names = [f"c{k}" for k in range(len(counts))]
        intervals: dict[str, list[float]] = {
            "bootstrap": bootstrap_interval(labels, probabilities, metric, seed),
            "now": compute_metrics(labels, probabilities, names, seed=seed)["intervals"][metric],
        }
        for method, (low, high) in intervals.items():
            held[method].append(low <= truth <= high)
            widths[method].append(high - low)
    return {
        **{f"coverage_{m}": float(np.mean(v)) for m, v in held.items()},
        **{f"width_{m}": float(np.median(v)) for m, v in widths.items()},
    }


def table(rows: list[dict[str, Any]], head: str, key: Callable[[dict[str, Any]], str]) -> list[str]:
    lines = [
        f"| {head} | coverage, bootstrap | coverage, now | median width, bootstrap | now |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {key(r)} | {r['coverage_bootstrap']:.1%} | {r['coverage_now']:.1%} | "
        f"{100 * r['width_bootstrap']:.1f} | {100 * r['width_now']:.1f} |"
        for r in rows
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=400)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    accuracy_rows = [
        {"metric": "accuracy", "images": images, "true": accuracy}
        | coverage(rng, [(images, accuracy), (0, 1.0)], "accuracy", accuracy, args.draws)
        for images, accuracy in ACCURACY_SETTINGS
    ]
    balanced_rows = [
        {"metric": "balanced_accuracy", "images": rare, "true": (COMMON[1] + recall) / 2}
        | coverage(rng, [COMMON, (rare, recall)], "balanced_accuracy", (COMMON[1] + recall) / 2, args.draws)
        for rare, recall in BALANCED_SETTINGS
    ]
    write_csv(NAME, accuracy_rows + balanced_rows)
    lines = [
        "# Coverage of the 95 % intervals of test accuracy and balanced accuracy",
        "",
        f"Command: `python benchmarks/interval_coverage.py --draws {args.draws}` at commit {_commit()}; "
        f"{_cpu()}; load average {os.getloadavg()[1]:.1f} (5 min) when written.",
        f"Each row: {args.draws} test sets drawn with a known truth; coverage is the share whose 95 % "
        f"interval holds it (95 % is right; less is overconfident), width in points. Bootstrap: the "
        f"percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples) that every metric used before; now: "
        "accuracy's Wilson score interval, balanced accuracy's bootstrap interval joined with its "
        "posterior's.",
        "",
        "## Accuracy: test images, each right with the true accuracy",
        "",
        *table(accuracy_rows, "images, true accuracy", lambda r: f"{r['images']:.0f}, {r['true']:.0%}"),
        "",
        f"## Balanced accuracy: {COMMON[0]} images of a common class (recall {COMMON[1]:.0%}) and a rare one",
        "",
        *table(
            balanced_rows,
            "rare images, rare recall (true balanced accuracy)",
            lambda r: f"{r['images']:.0f}, {2 * r['true'] - COMMON[1]:.0%} ({r['true']:.1%})",
        ),
    ]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
