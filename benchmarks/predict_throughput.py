"""Prediction throughput of a shipped model: what the tool adds to the bare network, and ONNX.

ELPV test images (the default split: `make_splits(elpv, 0.1, 0.25, seed=0).test`), the packaged
EfficientNet-Lite0 at 224 px with a new 4-class head (speed does not depend on the head's values, so no
training is needed), batches of 32, on the CPU. Each stage runs once to warm up, then is timed over
`--repeats` rounds that each run every stage once (interleaved); the median time counts.

- bare forward: the network alone on batches already decoded, resized, cropped and normalized;
- predict_proba on PIL images: `Classifier.predict_proba` on decoded images, i.e. resize, crop,
  normalization, forward and softmax; its time beyond the bare forward is the tool's overhead;
- decode: `decode_image` alone, the part of predicting on files that the PIL stage leaves out;
- predict_files: `Classifier.predict_files` on the paths, everything included;
- onnx, onnx int8: `predict_proba` on PIL images with the exported model on onnxruntime.

    python benchmarks/predict_throughput.py [--limit 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch

import transferkit
from default_fit import _cpu, _source_state
from transferkit.data import make_splits, resolve_data
from transferkit.data.decode import decode_image
from transferkit.export import BundleInfo, Classifier, export_model, save_bundle
from transferkit.export.onnx import INT8_FILE, OnnxPixelModel
from transferkit.models import resolve_model

RESULTS = Path(__file__).parent / "results"
MODEL = "efficientnet_lite0"


def interleaved_times(stages: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each stage over `rounds` rounds that run every stage once, after a warm-up.

    Interleaving spreads slow spells of a shared machine over all stages instead of one.
    """
    for work in stages.values():
        work()
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(rounds):
        for name, work in stages.items():
            started = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def build_bundle(folder: Path, class_names: list[str]) -> Path:
    """The default model's bundle as a run on ELPV writes it, but with one test-time view (the image)."""
    backbone = resolve_model(MODEL)
    backbone.reset_head(len(class_names))
    info = BundleInfo(class_names, {}, "elpv", data_channels=1)  # ELPV cells are grayscale, as in training
    return save_bundle(backbone, info, folder / "model")


def bare_forward(classifier: Classifier, pixels: torch.Tensor, batch_size: int) -> Callable[[], object]:
    """The network alone on normalized batches, made before timing."""
    assert classifier.network is not None
    network = classifier.network.eval()
    with torch.inference_mode():
        batches = [
            classifier.network.normalize(pixels[i : i + batch_size])
            for i in range(0, len(pixels), batch_size)
        ]

    def run() -> None:
        with torch.inference_mode():
            for batch in batches:
                network.model(batch)

    return run


def measure(paths: list[str], bundle: Path, batch_size: int, repeats: int) -> list[dict[str, object]]:
    classifier = transferkit.load(bundle)
    # before model.onnx exists: the weights translated in memory, kept once they match PyTorch
    in_memory = transferkit.load(bundle, backend="auto", device="cpu")
    export_model(bundle, quantize="int8")
    on_onnx = transferkit.load(bundle, backend="onnx")
    on_int8 = Classifier(
        OnnxPixelModel.from_bundle(bundle, INT8_FILE),
        on_onnx.label_names,
        on_onnx.preprocessing,
        data_channels=on_onnx.data_channels,
    )
    channels = classifier.data_channels
    images = [decode_image(path, channels) for path in paths]
    pixels = torch.from_numpy(classifier.preprocess(images))
    stages: dict[str, Callable[[], object]] = {
        "bare forward (normalized batches)": bare_forward(classifier, pixels, batch_size),
        "predict_proba on PIL images": lambda: classifier.predict_proba(images, batch_size),
        "decode alone": lambda: [decode_image(path, channels) for path in paths],
        "predict_files on paths (all included)": lambda: classifier.predict_files(
            paths, batch_size=batch_size
        ),
        "auto, translated in memory: predict_proba on PIL images": lambda: in_memory.predict_proba(
            images, batch_size
        ),
        "onnx: predict_proba on PIL images": lambda: on_onnx.predict_proba(images, batch_size),
        "onnx int8: predict_proba on PIL images": lambda: on_int8.predict_proba(images, batch_size),
    }
    seconds = interleaved_times(stages, repeats)
    bare = seconds["bare forward (normalized batches)"]
    rows: list[dict[str, object]] = []
    for name, value in seconds.items():
        overhead = "" if name == "decode alone" else f"{100 * (value / bare - 1):.1f}"
        rows.append(
            {
                "stage": name,
                "images": len(paths),
                "seconds": f"{value:.3f}",
                "images_per_s": f"{len(paths) / value:.1f}",
                "time_vs_bare_forward_pct": overhead,
            }
        )
    return rows


def write_results(rows: list[dict[str, object]], command: str, machine: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "predict_throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Prediction throughput: EfficientNet-Lite0, 224 px, ELPV test images, batch 32, CPU",
        "",
        f"Command: `{command}` at commit {_source_state()}",
        "",
        machine,
        "",
        "| stage | images/s | time vs bare forward |",
        "| --- | ---: | ---: |",
    ]
    for row in rows:
        extra = f"+{row['time_vs_bare_forward_pct']} %" if row["time_vs_bare_forward_pct"] else "n/a"
        lines.append(f"| {row['stage']} | {row['images_per_s']} | {extra.replace('+-', '-')} |")
    lines += [
        "",
        "Time vs bare forward: how much longer the stage takes than the network alone on the same images",
        "already normalized; for `predict_proba on PIL images` that is the tool's overhead (resize, crop,",
        "normalization, softmax) with decoding excluded. `decode alone` is what reading files adds on top.",
        "",
    ]
    (RESULTS / "predict_throughput.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=256, help="test images to run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    source = resolve_data("elpv")
    test = make_splits(source, 0.1, 0.25, seed=0).test[: args.limit]
    paths = [source.records[index].path for index in test]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(paths, build_bundle(Path(folder), source.class_names), args.batch_size, args.repeats)
    load_after = os.getloadavg()
    machine = (
        f"Machine: {_cpu()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}; 1-minute load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after."
    )
    command = (
        f"python benchmarks/predict_throughput.py --limit {args.limit} --batch-size {args.batch_size} "
        f"--repeats {args.repeats}"
    )
    write_results(rows, command, machine)
    print((RESULTS / "predict_throughput.md").read_text())


if __name__ == "__main__":
    main()
