"""Test-time views out of fold: the first K symmetries of the square against all 8, on a cross-validated run.

The run must come from `fit --folds K --folds-final ensemble` (e.g. `elpv_levers.py --levers default
--folds 5`): each fold's weights (``folds/fold-N/checkpoints``, at the WiSE-FT weight the run chose)
classify the train images that fold held out, as ``oof_predictions.csv`` lists them, under every view of
`D4_VIEWS`; the run's own views (the first ones) must give back the probabilities the run wrote, to
1e-5, before anything is compared. The test split is never read. The first `--fewer` views (4: the
image, its two mirrors and its half turn, what d4 runs averaged before) and all 8 are scored with the
run's temperature, on the same images, with a paired bootstrap interval of the accuracy difference.

    python benchmarks/elpv_test_views.py RUN_DIR
    python benchmarks/elpv_test_views.py RUN_DIR --fewer 2 --name elpv_test_views_2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from default_fit import DEFECTIVE, RESULTS, _cpu, _source_state, write_csv
from transferkit.data.packaged import ELPV_BINARY
from transferkit.evaluation.calibration import tempered_probabilities
from transferkit.evaluation.metrics import compute_metrics
from transferkit.export.predictor import Classifier, load
from transferkit.models import resolve_model
from transferkit.training.interpolation import interpolate
from transferkit.transforms.views import D4_VIEWS

NAME = "elpv_test_views"
CHECK_ATOL = 1e-5  # oof_predictions.csv keeps 6 decimals
BOOTSTRAP = 2000


def fold_logits(
    run: Path, model: str, bundle: Classifier, fold: int, paths: list[str], *, alpha: float
) -> np.ndarray:
    """View logits (8, N, classes) of `paths` by fold `fold`'s weights at `alpha` (the run's `model`
    spec), under `D4_VIEWS`."""
    backbone = resolve_model(model, pretrained=False)
    backbone.reset_head(len(bundle.label_names))
    checkpoints = run / "folds" / f"fold-{fold}" / "checkpoints"
    tuned = torch.load(checkpoints / "trained.pt", weights_only=True)
    start = torch.load(checkpoints / "start.pt", weights_only=True) if alpha != 1.0 else tuned
    backbone.model.load_state_dict(interpolate(start, tuned, alpha))
    backbone.model.eval()
    classifier = Classifier.from_network(
        backbone.model,
        bundle.label_names,
        bundle.preprocessing,  # the run's own normalization and size
        views=D4_VIEWS,
        data_channels=bundle.data_channels,
        backend="auto",
    )
    return classifier.view_logits(np.stack([bundle.pixels(path) for path in paths]))


def scores(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """The figures `elpv_levers.py` reports, by the library's own metrics."""
    metrics = compute_metrics(labels, probs, names, [ELPV_BINARY], resamples=1)
    return {
        "accuracy": metrics["accuracy"],
        "binary_accuracy": metrics["groupings"]["binary"]["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "recall_p1": next(row["recall"] for row in metrics["per_class"] if row["class"] == DEFECTIVE),
        "log_loss": metrics["log_loss"],
    }


def compare(run: Path, fewer: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The first `fewer` views and all 8 scored on the same held-out images, and their paired comparison."""
    bundle = load(run / "model")
    names = list(bundle.label_names)
    own = [view.__name__ for view in bundle.views]
    if own != [view.__name__ for view in D4_VIEWS[: len(own)]]:
        raise SystemExit(f"{run}: its views {own} are not the first of the 8 symmetries")
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]["name"]
    metrics = json.loads((run / "metrics.json").read_text())
    alpha = (metrics.get("weight_choice") or {}).get("alpha", 1.0)
    with open(run / "oof_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels, few_probs, all_probs, seconds = [], [], [], 0.0
    for fold in sorted({int(row["fold"]) for row in rows}):
        held_out = [row for row in rows if int(row["fold"]) == fold]
        started = time.perf_counter()
        logits = fold_logits(run, model, bundle, fold, [row["path"] for row in held_out], alpha=alpha)
        seconds += time.perf_counter() - started
        written = np.array([[float(row[f"p_{name}"]) for name in names] for row in held_out])
        mine = tempered_probabilities(logits[: len(own)], bundle.temperature)
        if not np.allclose(mine, written, atol=CHECK_ATOL):
            raise SystemExit(f"fold {fold}: the run's own views do not give back oof_predictions.csv")
        labels.append(np.array([names.index(row["true"]) for row in held_out]))
        few_probs.append(tempered_probabilities(logits[:fewer], bundle.temperature))
        all_probs.append(tempered_probabilities(logits, bundle.temperature))
        print(
            f"fold {fold}: {len(held_out)} images, {len(D4_VIEWS)} views in {seconds:.0f} s so far",
            flush=True,
        )
    y, first, every = np.concatenate(labels), np.concatenate(few_probs), np.concatenate(all_probs)
    table = [
        {"views": " ".join(v.__name__ for v in D4_VIEWS[:fewer]), "count": fewer, **scores(first, y, names)},
        {"views": " ".join(v.__name__ for v in D4_VIEWS), "count": len(D4_VIEWS), **scores(every, y, names)},
    ]
    right_few, right_all = first.argmax(1) == y, every.argmax(1) == y
    draws = np.random.default_rng(0).integers(0, len(y), (BOOTSTRAP, len(y)))
    gains = right_all[draws].mean(1) - right_few[draws].mean(1)
    paired = {
        "images": len(y),
        "alpha": alpha,
        "temperature": bundle.temperature,
        "right_only_with_all": int((right_all & ~right_few).sum()),
        "right_only_with_fewer": int((right_few & ~right_all).sum()),
        "gain_interval": [float(g) for g in np.percentile(gains, [2.5, 97.5])],
        "seconds_8_views": seconds,
    }
    return table, paired


def markdown(command: str, table: list[dict[str, Any]], paired: dict[str, Any]) -> str:
    low, high = paired["gain_interval"]
    keys = ("accuracy", "binary_accuracy", "balanced_accuracy", "macro_f1", "recall_p1", "log_loss")
    lines = [
        "# Test-time views out of fold on ELPV (test not read)",
        "",
        f"Command: `python benchmarks/elpv_test_views.py {command}` at commit {_source_state()}; {_cpu()}.",
        "",
        f"The run's fold models (WiSE-FT α {paired['alpha']}, temperature {paired['temperature']:.3f}) on "
        f"the {paired['images']} train images each held out; the run's own views reproduce its "
        f"oof_predictions.csv to {CHECK_ATOL:g}. All 8 views took {paired['seconds_8_views']:.0f} s in all.",
        "",
        "| views | " + " | ".join(keys) + " |",
        "| --- |" + " ---: |" * len(keys),
    ]
    for row in table:
        lines.append(f"| {row['views']} | " + " | ".join(f"{row[key]:.4f}" for key in keys) + " |")
    lines += [
        "",
        f"Images right with all 8 views only: {paired['right_only_with_all']}; with the first "
        f"{table[0]['count']} only: {paired['right_only_with_fewer']}. Paired bootstrap ({BOOTSTRAP} draws) "
        f"95 % interval of the 4-class accuracy gain: {100 * low:+.2f} to {100 * high:+.2f} points.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run of fit --folds K --folds-final ensemble")
    parser.add_argument("--fewer", type=int, default=4, choices=range(1, 8), help="views set beside all 8")
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()
    table, paired = compare(args.run, args.fewer)
    (RESULTS / f"{args.name}.md").write_text(markdown(" ".join(sys.argv[1:]), table, paired))
    low, high = paired.pop("gain_interval")
    write_csv(args.name, [{**row, **paired, "gain_low": low, "gain_high": high} for row in table])
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
