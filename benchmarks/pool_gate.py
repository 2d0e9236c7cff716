"""The pseudo-label gate's margin: which rule uses a pool where it helps and leaves it out where it hurts.

`--semi pseudo-label` uses its pseudo-labels only when a head trained with them classifies the labeled
images better out of fold (`PoolGate`). This benchmark measures what margins of
0, 0.5 and 1 standard error of the paired difference would decide, and what each decision is worth on
test, over many draws of the labeled images.

For each task and label budget, each draw is one `data.split_seed` (its own labeled images, pool and,
where the source has no test split, test images), on frozen features of the packaged
EfficientNet-Lite0 computed once per image (the centre view): the self-training rounds and the gate
exactly as a run measures them (`self_train`, `pool_gate`), then the test accuracy of a linear head
on the labeled images alone and with the pseudo-labels. A rule's gain is the test gain of the draws
where it opens the pool (zero elsewhere); "harmed" counts draws where it opened a pool that lowered
test accuracy. The downstream here is the linear probe; the default recipe fine-tunes after the gate.

    python benchmarks/pool_gate.py --draws 10
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import torch

from default_fit import RESULTS, _commit, _cpu, write_csv
from transferkit.config import DataConfig
from transferkit.data.cache import decode_splits
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits
from transferkit.models import resolve_model
from transferkit.training.features import extract_feature_sets, fit_linear_head
from transferkit.training.method_options import PseudoLabelOptions
from transferkit.training.semi.pseudo_label import L2, head_accuracy, known_accuracy, pool_gate, self_train
from transferkit.transforms.normalize import Normalize

MARGINS = (0.0, 0.5, 1.0)  # in standard errors of the paired out-of-fold difference


@dataclass(frozen=True)
class Cell:
    task: str
    data: str
    image_size: int | None  # None: the weights' own size
    budget: str
    labels_per_class: int | None = None
    label_fraction: float | None = None

    def config(self, split_seed: int) -> DataConfig:
        return DataConfig(
            name=self.data,
            split_seed=split_seed,
            labels_per_class=self.labels_per_class,
            label_fraction=self.label_fraction,
        )


CELLS = [
    *(Cell("digits", "digits", 96, f"{k} per class", labels_per_class=k) for k in (5, 10, 25)),
    Cell("elpv", "elpv", None, "10 %", label_fraction=0.1),
    Cell("elpv", "elpv", None, "25 per class", labels_per_class=25),
    Cell("elpv-binary", "elpv:binary", None, "10 per class", labels_per_class=10),
]


def all_features(source: ImageSource, image_size: int | None) -> torch.Tensor:
    """Frozen Lite0 features of every image of the source, in record order."""
    backbone = resolve_model("efficientnet_lite0", pretrained=True)
    if image_size:
        backbone.preprocessing = backbone.preprocessing.resized(image_size)
    everything = Splits(list(range(len(source.records))), [], [])
    images = decode_splits(source, everything, backbone.preprocessing)["train"].images
    return extract_feature_sets(backbone, Normalize(backbone.preprocessing), [images])[0]


def measure_draw(
    cell: Cell, split_seed: int, source: ImageSource, features: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """The gate's measurement and the linear probe's test accuracy without and with the pool."""
    splits = split_with_budget(source, cell.config(split_seed))
    labeled = torch.tensor(sorted(splits.train + splits.val))
    pool, test = torch.tensor(splits.unlabeled), torch.tensor(splits.test)
    options = PseudoLabelOptions()
    num_classes = int(labels.max()) + 1
    x, y = features[labeled], labels[labeled]
    gate = pool_gate(
        (x, y), features[pool], num_classes=num_classes, rounds=options.rounds, threshold=options.threshold
    )
    assert gate is not None, f"{cell}: too few labeled images per class for the gate"
    unknown = torch.full((len(pool),), -1, dtype=torch.long)
    nothing = (x[:0], y[:0])
    chosen = self_train(
        (x, y),
        nothing,
        (features[pool], unknown),
        num_classes=num_classes,
        rounds=options.rounds,
        threshold=options.threshold,
    )
    positions = torch.tensor(chosen.positions, dtype=torch.long)
    with_pool = (torch.cat([x, features[pool][positions]]), torch.cat([y, torch.tensor(chosen.labels)]))
    test_x, test_y = features[test], labels[test]
    without_acc = head_accuracy(*fit_linear_head(x, y, num_classes, L2), test_x, test_y)
    with_acc = head_accuracy(*fit_linear_head(*with_pool, num_classes, L2), test_x, test_y)
    return {
        "task": cell.task,
        "budget": cell.budget,
        "split_seed": split_seed,
        "labeled": len(labeled),
        "pseudo_labels": len(positions),
        "pseudo_label_accuracy": known_accuracy(labels[pool][positions], torch.tensor(chosen.labels)),
        "gate_without": gate.without,
        "gate_with": gate.with_pool,
        "gate_standard_error": gate.standard_error,
        "test_without": without_acc,
        "test_with": with_acc,
    }


def opens(row: dict[str, Any], margin: float) -> bool:
    return row["gate_with"] - row["gate_without"] > margin * row["gate_standard_error"]


def rule_summary(rows: list[dict[str, Any]], margin: float | None) -> tuple[float, int, int]:
    """Mean test gain, draws opened, draws harmed, for a margin (None: always use the pool)."""
    opened = [r for r in rows if margin is None or opens(r, margin)]
    gains = [r["test_with"] - r["test_without"] for r in opened]
    return sum(gains) / len(rows), len(opened), sum(gain < 0 for gain in gains)


def markdown(rows: list[dict[str, Any]]) -> str:
    rules: list[tuple[str, float | None]] = [("always", None), *((f"> {m:g} SE", m) for m in MARGINS)]
    lines = [
        "# The pseudo-label gate's margin, over draws of the labeled images",
        "",
        f"Command: `python benchmarks/pool_gate.py {shlex.join(sys.argv[1:])}` at commit {_commit()}; "
        f"{_cpu()}, torch {torch.__version__}; load average {os.getloadavg()[1]:.1f} (5 min) when written.",
        "Frozen packaged EfficientNet-Lite0 features (centre view), self-training and gate as "
        "`--semi pseudo-label` runs them; test accuracy of a linear head without and with the pseudo-labels. "
        "Per rule: mean test gain over all draws in points (zero where the rule leaves the pool out), "
        "then draws opened / draws where the opened pool lowered test accuracy.",
        "",
        "| task | budget | draws | pseudo-labels (right) | out-of-fold gain (mean ± sd) | "
        "test gain (mean ± sd) | " + " | ".join(name for name, _ in rules) + " |",
        "| --- | --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in rules) + " |",
    ]
    for (task, budget), group in _groups(rows).items():
        cells = []
        for _, margin in rules:
            gain, opened, harmed = rule_summary(group, margin)
            cells.append(f"{100 * gain:+.2f} ({opened}/{harmed})")
        lines.append(
            f"| {task} | {budget} | {len(group)} | {_pseudo_labels(group)} | "
            f"{_spread([r['gate_with'] - r['gate_without'] for r in group])} | "
            f"{_spread([r['test_with'] - r['test_without'] for r in group])} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["budget"]), []).append(row)
    return groups


def _pseudo_labels(rows: list[dict[str, Any]]) -> str:
    right = [r["pseudo_label_accuracy"] for r in rows if r["pseudo_label_accuracy"] is not None]
    count = statistics.mean(r["pseudo_labels"] for r in rows)
    return f"{count:.0f} ({statistics.mean(right):.1%})" if right else f"{count:.0f}"


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):+.2f} ± {100 * sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10, help="split seeds 0 .. draws-1 per cell")
    parser.add_argument("--tasks", nargs="+", default=sorted({c.task for c in CELLS}))
    parser.add_argument("--name", default="pool_gate")
    args = parser.parse_args()
    rows = []
    loaded: dict[tuple[str, int | None], tuple[ImageSource, torch.Tensor, torch.Tensor]] = {}
    for cell in (c for c in CELLS if c.task in args.tasks):
        key = (cell.data, cell.image_size)
        if key not in loaded:  # the source and its features once; each draw only splits them
            source = load_source(DataConfig(name=cell.data))
            labels = torch.tensor([record.label for record in source.records])
            loaded[key] = (source, all_features(source, cell.image_size), labels)
        for split_seed in range(args.draws):
            row = measure_draw(cell, split_seed, *loaded[key])
            rows.append(row)
            print(
                f"{cell.task} {cell.budget} draw {split_seed}: gate {row['gate_without']:.3f} -> "
                f"{row['gate_with']:.3f} (SE {row['gate_standard_error']:.3f}), "
                f"test {row['test_without']:.4f} -> {row['test_with']:.4f}",
                flush=True,
            )
    write_csv(args.name, rows)
    text = markdown(rows)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
