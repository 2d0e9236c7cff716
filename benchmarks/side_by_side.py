"""transferkit side by side with a plain PyTorch + timm loop and the peers a user would pick instead.

BENCHMARKS.md section 2. One invocation runs every tool on the same ELPV split (transferkit's split
of `--subset` images), the same packaged EfficientNet-Lite0 weights, image size, epochs, batch size and
augmentation, one after the other, each in its own process (`side_by_side_tools.py`), so wall time and
peak memory (RSS, from `os.wait4`) are that tool's alone. Every layer trains in every tool:

- reference: a minimal PyTorch loop (AdamW, warm-up + cosine, label smoothing 0.1, a val pass per epoch);
- reference-channels-last: the same loop with the network and batches in channels-last memory layout,
  as transferkit runs them (on CPUs the convolutions are much faster so);
- transferkit: `transferkit.fit(strategy="full", ...)` with `preprocess.tta: false` (one test view, as
  the others), `data.cache: false` (it decodes the files, as the others) and `train.batchnorm: adapt`
  (BatchNorm statistics follow the batches, as in the others);
- fastai: `vision_learner(dls, "tf_efficientnet_lite0", ...).fine_tune(epochs, freeze_epochs=0)`;
- hf-trainer: Hugging Face `Trainer` around the timm network;
- fastai-channels-last, hf-trainer-channels-last: each peer at its best CPU setting, channels-last
  (fastai's `Learner.to_channelslast(use_amp=False)`; the Trainer's model moved to channels-last).

Every tool's loop time is the same span: the epochs with their validation passes, the test pass
outside it.

With `--repeats R` the tools run in R interleaved rounds and times are medians. Accuracy is one run on
a small test split: read it as a check that every tool learned, not as a ranking.

    python benchmarks/side_by_side.py                          # quick: 600 images, 2 epochs (~6 min)
    python benchmarks/side_by_side.py --subset 2624 --epochs 7 --repeats 3   # full

The default recipe against a plain loop doing the same epochs (issue: a library that caches frozen
compute beats the hand-written loop), in its own results file:

    python benchmarks/side_by_side.py --epochs 7 --lr 3e-4 --tools reference-channels-last-frozen \\
        transferkit-default --name side_by_side_default
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from default_fit import RESULTS, _cpu, _source_state, write_csv
from side_by_side_tools import Settings

TOOLS_SCRIPT = Path(__file__).with_name("side_by_side_tools.py")
TOOLS = [
    "reference",
    "reference-channels-last",
    "transferkit",
    "fastai",
    "fastai-channels-last",
    "hf-trainer",
    "hf-trainer-channels-last",
]
DEFAULT_RECIPE_TOOLS = ["reference-channels-last-frozen", "transferkit-default"]  # on request (--tools)
PEER_PACKAGES = {
    "fastai": ["fastai"],
    "fastai-channels-last": ["fastai"],
    "hf-trainer": ["transformers", "accelerate"],
    "hf-trainer-channels-last": ["transformers", "accelerate"],
}
DESCRIPTIONS = {
    "reference": "plain PyTorch + timm loop in side_by_side_tools.py, PyTorch's default NCHW layout",
    "reference-channels-last": "the same loop with the network and batches in channels-last layout, as "
    "transferkit runs them (the overhead floor for transferkit's kernels)",
    "transferkit": "transferkit.fit, strategy full, preprocess.tta false, data.cache false, batchnorm adapt",
    "fastai": "fastai vision_learner(...).fine_tune(epochs, freeze_epochs=0): its head, one-cycle, "
    "discriminative rates",
    "hf-trainer": "transformers Trainer on TimmWrapperForImageClassification holding the packaged weights: "
    "AdamW, cosine with warm-up, label smoothing, eval per epoch; keeps the last partial batch",
    "fastai-channels-last": "the same fastai run after Learner.to_channelslast(use_amp=False): fastai's "
    "documented channels-last switch, without its fp16 mixed precision (no use on a CPU)",
    "hf-trainer-channels-last": "the same Trainer run with the model moved to channels-last layout",
    "reference-channels-last-frozen": "the channels-last loop training what the default trains: the lowest "
    "3 layer groups and every BatchNorm statistic frozen, the frozen layers recomputed every step",
    "transferkit-default": "transferkit.fit with its default strategy and settings (head on frozen features, "
    "frozen layers cached, WiSE-FT, 4 test-time views, report, bundle), data.cache false",
}


def warm_up_imports(tools: list[str]) -> None:
    """Imports every tool's libraries once, untimed, so the first timed process does not pay for
    reading them from disk into the page cache."""
    modules = ["torch", "timm", "transferkit.api.fit"]
    modules += [name for tool in tools for name in PEER_PACKAGES.get(tool, [])]
    present = [name for name in modules if importlib.util.find_spec(name.split(".")[0]) is not None]
    subprocess.run([sys.executable, "-c", f"import {', '.join(present)}"], check=False, capture_output=True)


def run_tool(tool: str, settings: Settings, out: Path) -> dict[str, Any]:
    """Runs one tool in a child process; returns its times, peak RSS and result, or why it failed."""
    missing = [name for name in PEER_PACKAGES.get(tool, []) if importlib.util.find_spec(name) is None]
    if missing:
        return {"status": f"not installed ({', '.join(missing)}): pip install -e '.[bench]'"}
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(TOOLS_SCRIPT), tool, "--settings", json.dumps(asdict(settings))]
    started = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        process = subprocess.Popen([*command, "--out", str(out)], stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        lines = (out / "log.txt").read_text().strip().splitlines()
        return {"status": f"failed: {lines[-1] if lines else f'exit status {status}'}"}
    result = json.loads((out / "result.json").read_text())
    return {"status": "ok", **result, "wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}


def test_metrics(tool: str, result: dict[str, Any], out: Path) -> dict[str, float]:
    """transferkit's own headline, or the same metrics code on the tool's saved test probabilities."""
    if tool.startswith("transferkit"):
        return result["headline"]
    from transferkit.data.packaged import ELPV_BINARY, ELPV_CLASS_NAMES
    from transferkit.evaluation.metrics import compute_metrics, headline_metrics

    saved = np.load(out / "test_probabilities.npz")
    metrics = compute_metrics(
        saved["labels"], saved["probabilities"], ELPV_CLASS_NAMES, (ELPV_BINARY,), resamples=200
    )
    return headline_metrics(metrics)


def split_sizes(settings: Settings) -> dict[str, int]:
    from transferkit.config import DataConfig
    from transferkit.data.load import load_source, split_with_budget

    config = DataConfig(subset=settings.subset)
    splits = split_with_budget(load_source(config), config)
    return {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}


def summarize(tool: str, runs: list[dict[str, Any]], outs: list[Path], images: int) -> dict[str, Any]:
    """One row per tool: medians over its runs, accuracy of the first."""
    if runs[0]["status"] != "ok":
        return {"tool": tool, "status": runs[0]["status"]}
    headline = test_metrics(tool, runs[0], outs[0])
    row: dict[str, Any] = {
        "tool": tool,
        "status": "ok",
        "runs": len(runs),
        "binary_accuracy": headline["binary_accuracy"],
        "accuracy": headline["accuracy"],
    }
    for key in ("wall_s", "work_s", "train_s", "peak_rss_gib"):
        row[key] = statistics.median(run[key] for run in runs)
    row["train_images_per_s"] = images / row["train_s"]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each tool's time and memory over the plain loop's (`ref`), the channels-last loop's (`cl`) and the
    channels-last loop's with the default's frozen layers (`clf`), where they ran."""
    for base, suffix in RATIO_BASES:
        reference = next((r for r in rows if r["tool"] == base and r["status"] == "ok"), None)
        for row in rows:
            if reference is None or row["status"] != "ok":
                continue
            for key in ("wall_s", "train_s", "peak_rss_gib"):
                row[f"{key.split('_')[0]}_over_{suffix}"] = row[key] / reference[key]


RATIO_BASES = (
    ("reference", "ref"),
    ("reference-channels-last", "cl"),
    ("reference-channels-last-frozen", "clf"),
)
COLUMNS = [
    ("binary_accuracy", "binary acc.", "{:.1%}"),
    ("accuracy", "4-class acc.", "{:.1%}"),
    ("wall_s", "wall s", "{:.0f}"),
    ("wall_over_ref", "wall / ref.", "{:.2f}x"),
    ("wall_over_cl", "wall / ref. CL", "{:.2f}x"),
    ("train_s", "train+val loop s", "{:.0f}"),
    ("train_over_ref", "loop / ref.", "{:.2f}x"),
    ("train_over_cl", "loop / ref. CL", "{:.2f}x"),
    ("wall_over_clf", "wall / ref. CL frozen", "{:.2f}x"),
    ("train_over_clf", "loop / ref. CL frozen", "{:.2f}x"),
    ("train_images_per_s", "train images/s", "{:.1f}"),
    ("peak_rss_gib", "peak RSS GiB", "{:.2f}"),
    ("peak_over_ref", "RSS / ref.", "{:.2f}x"),
]


def markdown(rows: list[dict[str, Any]], command: str, context: list[str]) -> str:
    columns = [c for c in COLUMNS if any(c[0] in row for row in rows) or not c[0].endswith("_clf")]
    lines = ["# Side by side on ELPV: the same fine-tuning in each tool", ""]
    lines += [f"Command: `{command}` at commit {_source_state()}", "", *context, ""]
    lines += ["| tool | " + " | ".join(title for _, title, _ in columns) + " |"]
    lines += ["| --- |" + " ---: |" * len(columns)]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['tool']} | {row['status']} |" + " |" * (len(columns) - 1))
            continue
        cells = [fmt.format(row[key]) if key in row else "n/a" for key, _, fmt in columns]
        lines.append(f"| {row['tool']} | " + " | ".join(cells) + " |")
    lines += ["", "Tools:", ""] + [f"- {row['tool']}: {DESCRIPTIONS[row['tool']]}" for row in rows]
    lines += [
        "- timm's own training script (`train.py`): not run; it ships in timm's repository, not in the",
        "  wheel installed here.",
        "",
        "ref. = the plain loop (NCHW), ref. CL = the same loop in channels-last layout, ref. CL frozen = the",
        "channels-last loop with the default's frozen layers (where it ran).",
        "wall s: the whole process (interpreter, imports, data, training, test predictions, and for",
        "transferkit its report, plots and exported bundle); train+val loop s: the epochs with their",
        "validation passes, the same span in every tool, the test pass outside it (transferkit: the sum",
        "of `seconds` in metrics.csv; the Trainer: `trainer.train()`);",
        "train images/s: training images seen (train split x epochs) per second of that loop.",
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    done = [row for row in rows if row["status"] == "ok"]
    figure = Figure(figsize=(9, 3.5), dpi=110)
    left, right = figure.subplots(1, 2)
    names = [row["tool"] for row in done]
    left.barh(names, [row["wall_s"] for row in done], color="#2a7", label="whole process")
    left.barh(names, [row["train_s"] for row in done], color="#175", label="train+val loop")
    left.set_xlabel("seconds (lower is better)")
    left.legend(fontsize=8)
    right.barh(names, [row["binary_accuracy"] for row in done], color="#bbb")
    right.set_xlabel("binary test accuracy")
    right.set_xlim(0.5, 1.0)
    for axes in (left, right):
        axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path)


def write(rows: list[dict[str, Any]], command: str, context: list[str], name: str) -> None:
    write_csv(name, rows, ["tool", "status", "runs", *[key for key, _, _ in COLUMNS], "work_s"])
    (RESULTS / f"{name}.md").write_text(markdown(rows, command, context))
    plot(rows, RESULTS / f"{name}.png")


def machine(load_before: float) -> str:
    import torch

    return (
        f"Machine: {_cpu()}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), no GPU used; 1-minute load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=600, help="ELPV images in all (train+val+test)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--augment", choices=["d4", "none"], default="d4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; times are medians")
    parser.add_argument("--lr", type=float, default=Settings.lr)
    parser.add_argument("--tools", nargs="+", choices=TOOLS + DEFAULT_RECIPE_TOOLS, default=TOOLS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-side-by-side"))
    parser.add_argument("--name", default="side_by_side", help="results/NAME.{csv,md,png}")
    args = parser.parse_args()
    settings = replace(
        Settings(), subset=args.subset, epochs=args.epochs, image_size=args.image_size,
        augment=args.augment, seed=args.seed, lr=args.lr,
    )  # fmt: skip
    warm_up_imports(args.tools)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[tuple[dict[str, Any], Path]]] = {tool: [] for tool in args.tools}
    for round_ in range(args.repeats):
        for tool in args.tools:
            out = args.out / tool / str(round_)
            runs[tool].append((run_tool(tool, settings, out), out))
            print(tool, json.dumps(runs[tool][-1][0], default=str)[:300], flush=True)
    sizes = split_sizes(settings)
    rows = [
        summarize(tool, [r for r, _ in done], [o for _, o in done], sizes["train"] * settings.epochs)
        for tool, done in runs.items()
    ]
    add_ratios(rows)
    context = [
        machine(load_before),
        "",
        f"Settings: ELPV subset of {settings.subset} images (train {sizes['train']}, val {sizes['val']}, "
        f"test {sizes['test']}), EfficientNet-Lite0 packaged weights, {settings.image_size} px, "
        f"{settings.epochs} epochs, batch {settings.batch_size}, augmentation {settings.augment}, "
        f"lr {settings.lr}, weight decay {settings.weight_decay}, label smoothing "
        f"{settings.label_smoothing}, seed {settings.seed}, {args.repeats} round(s).",
    ]
    tools = " ".join(args.tools)
    command = (
        f"python benchmarks/side_by_side.py --subset {args.subset} --epochs {args.epochs} "
        f"--image-size {args.image_size} --augment {args.augment} --seed {args.seed} --lr {args.lr} "
        f"--repeats {args.repeats} --tools {tools}"
    )
    command += f" --name {args.name}" if args.name != "side_by_side" else ""
    write(rows, command, context, args.name)
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
