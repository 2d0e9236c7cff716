"""`transferkit compare`: runs side by side, and which accuracy differences are larger than the noise.

Runs scored on the same test images are compared pairwise: the difference in accuracy to the first
run is bootstrapped over the shared images (one resample draws the same images for both runs), which
is much tighter than comparing two separate intervals. A difference whose 95 % interval excludes zero
is called beyond the noise.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml

from transferkit.config import method_name
from transferkit.errors import ConfigError
from transferkit.evaluation.metrics import wilson_interval
from transferkit.evaluation.plots import save_figure
from transferkit.files import write_atomic

RESAMPLES = 2000


@dataclass(frozen=True)
class RunRow:
    """One run: what it was, its headline metrics, and its accuracy with a 95 % Wilson interval."""

    run: str
    model: str
    strategy: str
    data: str
    headline: dict[str, float]
    accuracy_interval: tuple[float, float]
    wall_time_s: float | None
    difference: tuple[float, float, float] | None  # accuracy minus the first run's, with its interval
    shared_images: int

    @property
    def beyond_noise(self) -> bool | None:
        if self.difference is None:
            return None
        _, low, high = self.difference
        return low > 0 or high < 0


def compare_runs(runs: list[str | Path], seed: int = 0) -> list[RunRow]:
    """Reads each run directory's config.yaml, metrics.json and predictions.csv."""
    if len(runs) < 2:
        raise ConfigError("compare needs at least two run directories.")
    loaded = [_read_run(Path(run)) for run in runs]
    rng = np.random.default_rng(seed)
    baseline = loaded[0]["correct"]
    rows = []
    for run, info in zip(runs, loaded, strict=True):
        correct: dict[str, bool] = info["correct"]
        shared = sorted(set(correct) & set(baseline))
        is_baseline = info is loaded[0]
        difference = None if is_baseline or not shared else _paired_difference(correct, baseline, shared, rng)
        rows.append(
            RunRow(
                str(run),
                info["model"],
                info["strategy"],
                info["data"],
                info["headline"],
                _accuracy_interval(list(correct.values())),
                info["wall_time_s"],
                difference,
                len(shared),
            )
        )
    return rows


def write_comparison(rows: list[RunRow], out: Path) -> list[Path]:
    """comparison.csv and comparison.png in `out`."""
    metrics = sorted({name for row in rows for name in row.headline})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["run", "model", "strategy", "data", *metrics, "accuracy_low", "accuracy_high",
                     "difference", "difference_low", "difference_high", "wall_time_s"])  # fmt: skip
    for row in rows:
        described = [row.run, row.model, row.strategy, row.data, *(row.headline.get(m) for m in metrics)]
        difference = row.difference or (None, None, None)
        writer.writerow([*described, *row.accuracy_interval, *difference, row.wall_time_s])
    table = write_atomic(out / "comparison.csv", text.getvalue().encode())
    return [table, plot_comparison(rows, out / "comparison.png")]


def plot_comparison(rows: list[RunRow], path: Path) -> Path:
    """Test accuracy of each run with its 95 % interval; runs beyond the noise of the first are marked."""
    figure, axes = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    names = [f"{Path(row.run).name}\n{row.model} · {row.strategy}" for row in rows]
    accuracy = np.array([row.headline["accuracy"] for row in rows])
    low = accuracy - np.array([row.accuracy_interval[0] for row in rows])
    high = np.array([row.accuracy_interval[1] for row in rows]) - accuracy
    colours = ["tab:blue" if row.beyond_noise else "tab:gray" for row in rows]
    positions = np.arange(len(rows))[::-1]
    axes.barh(positions, accuracy, xerr=[low, high], color=colours, capsize=4)
    axes.set_yticks(positions, names, fontsize=8)
    axes.set_xlabel("test accuracy (95 % interval); blue: differs from the first run beyond the noise")
    axes.set_xlim(max(0.0, float((accuracy - low).min()) - 0.05), 1.0)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)
    return path


def _read_run(run: Path) -> dict[str, Any]:
    files = {name: run / name for name in ("config.yaml", "metrics.json", "predictions.csv")}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ConfigError(f"{run} is not a finished transferkit run: it lacks {', '.join(missing)}.")
    try:
        config = yaml.safe_load(files["config.yaml"].read_text())
        metrics = json.loads(files["metrics.json"].read_text())
        with open(files["predictions.csv"], newline="") as handle:
            correct = {row["path"]: row["true"] == row["predicted"] for row in csv.DictReader(handle)}
        return _described(config, metrics, correct)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ConfigError(f"Cannot read the run {run}: {type(err).__name__} {err}. Is it damaged?") from err


def _described(config: dict[str, Any], metrics: dict[str, Any], correct: dict[str, bool]) -> dict[str, Any]:
    return {
        "model": config["model"]["name"],
        "strategy": method_name(config["train"]["strategy"]),  # a name, or a mapping of name and options
        "data": config["data"]["name"],
        "headline": metrics["headline"],
        "wall_time_s": metrics.get("wall_time_s"),
        "correct": correct,
    }


def _accuracy_interval(correct: list[bool]) -> tuple[float, float]:
    low, high = wilson_interval(sum(correct), len(correct))
    return low, high


def _interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _paired_difference(
    correct: dict[str, bool], baseline: dict[str, bool], shared: list[str], rng: np.random.Generator
) -> tuple[float, float, float]:
    deltas = np.array([float(correct[p]) - float(baseline[p]) for p in shared])
    low, high = _interval(deltas, rng)
    return float(deltas.mean()), low, high
