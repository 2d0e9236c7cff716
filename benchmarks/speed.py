"""Old commit against new commit, in one invocation: start-up, predict, evaluate, few-label fit, rank.

Each commit is checked out as a detached git worktree in a temporary folder; each measurement runs
`python -m transferkit ...` as a child process of the current interpreter with ``PYTHONPATH`` set to
that worktree's ``src``, in a fresh working folder with a fresh, empty ``TRANSFERKIT_CACHE`` (every run
is a first run: nothing decoded, extracted or translated before), but for predict-again and
evaluate-again: their runs share their side's cache, which one untimed run filled first (a user's
second command with the same model). The two sides alternate (old first in even
rounds, new first in odd ones); the table gives medians of ``--repeats`` rounds. Before timing, each
worktree's sources are byte-compiled and each side runs ``--help`` once; the quick measurements also
run once per side untimed.

The inputs are made once, with the old commit where a run is needed (a newer commit reads an older
run's config.yaml, not always the other way round), and shared by both sides:

- predict and evaluate: a linear probe of Lite0 on digits at its own 224 px (the network `predict`
  runs is the whole Lite0, as after any fine-tuning; the probe only makes it quickly), and 200 of the
  digits written as PNG files; predict-own-bundle and evaluate-own-run use the same recipe's run made
  by each side's own commit (what a user of that version has);
- check-data-photos and predict-photos: 40 JPEG files of a 12-megapixel phone camera's size, checked
  as an image folder, or classified with each side's own bundle; check-data-elpv: ELPV's 2,624 PNGs;
- few-label fit and rank: a manifest of digits 0 to 7 (8 classes) with 10 training images per class
  and the other 1,363 images of those classes as test images (digits holds no more); the validation
  carve leaves 72 labelled training images, which ``rank`` scores;
- photo-fit: the default fit of a small photo task (300 JPEG files in two class folders), at 224 px
  with random crops and flips, which no cache can hold.

    python benchmarks/speed.py                                       # every measurement but elpv-fit
    python benchmarks/speed.py --only help print-config --repeats 1  # start-up alone, in seconds
    python benchmarks/speed.py --elpv                                # also the default fit (10 min a side)
    python benchmarks/speed.py --only elpv-fit --name speed_elpv     # one row, in its own results file
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from default_fit import RESULTS, _cpu, write_csv

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"
BUNDLE_RECIPE = ["fit", "--data", "digits", "--strategy", "linear-probe", "--image-size", "224"]
FEW_LABEL_CLASSES, LABELS_PER_CLASS, PREDICT_IMAGES = 8, 10, 200
PHOTOS, PHOTO_SIZE = 40, (4032, 3024)  # JPEG files as a 12-megapixel phone camera writes them
PHOTO_SET, PHOTO_SET_SIZE, PHOTO_SET_TINT = 300, (320, 240), 24  # a small photo task, fitted at 224 px
ELPV_IMAGES = 2624


@dataclass(frozen=True)
class Inputs:
    """What the measurements read, made once and shared by both sides."""

    run: Path | None = None  # a run directory fine-tuned with the old commit
    own_runs: dict[str, Path] | None = None  # per side, the same recipe run with that side's commit
    images: Path | None = None  # a folder of PREDICT_IMAGES digit PNGs
    manifest: Path | None = None  # the few-label manifest (labels.csv)
    photos: Path | None = None  # a folder of PHOTOS camera-size JPEG files, two class subfolders
    photo_set: Path | None = None  # PHOTO_SET smaller JPEG files, two class subfolders told apart by tint


@dataclass(frozen=True)
class Measurement:
    name: str
    argv: Callable[[Inputs, str], list[str]]  # (inputs, side) -> the arguments of `python -m transferkit`
    needs: tuple[str, ...] = ()  # fields of Inputs
    target: str = "—"  # as issue 20 states it
    met: Callable[[float, float], bool] | None = None  # (old median s, new median s) -> target met
    warm_up: bool = False  # one untimed run per side first (the quick ones)
    again: bool = False  # every timed run reuses its side's cache, which an untimed first run filled


def _given(path: Path | None) -> str:
    if path is None:
        raise RuntimeError("an input this measurement needs was not made")
    return str(path)


def _own_run(inputs: Inputs, side: str) -> str:
    return _given((inputs.own_runs or {}).get(side))


MEASUREMENTS = (
    Measurement("help", lambda _, __: ["--help"], target="< 1 s", met=lambda _, new: new < 1, warm_up=True),
    Measurement("print-config", lambda _, __: ["fit", "--print-config"], warm_up=True),
    Measurement(
        "predict",
        lambda i, _: ["predict", _given(i.run), _given(i.images), "--format", "csv"],
        needs=("run", "images"),
        target="≥ 2x",
        met=lambda old, new: old / new >= 2,
        warm_up=True,
    ),
    Measurement(
        "predict-own-bundle",
        lambda i, side: ["predict", _own_run(i, side), _given(i.images), "--format", "csv"],
        needs=("own_runs", "images"),
        target="≥ 2x",
        met=lambda old, new: old / new >= 2,
        warm_up=True,
    ),
    Measurement(
        "evaluate",
        lambda i, _: ["evaluate", _given(i.run)],
        needs=("run",),
        target="≥ 2.5x",  # in images/s: both sides score the same images
        met=lambda old, new: old / new >= 2.5,
        warm_up=True,
    ),
    Measurement(
        "predict-again",
        lambda i, _: ["predict", _given(i.run), _given(i.images), "--format", "csv"],
        needs=("run", "images"),
        again=True,
    ),
    Measurement("evaluate-again", lambda i, _: ["evaluate", _given(i.run)], needs=("run",), again=True),
    Measurement(
        "evaluate-own-run",
        lambda i, side: ["evaluate", _own_run(i, side)],
        needs=("own_runs",),
        target="≥ 2.5x",
        met=lambda old, new: old / new >= 2.5,
        warm_up=True,
    ),
    Measurement("check-data-photos", lambda i, _: ["check-data", _given(i.photos)], needs=("photos",)),
    Measurement("check-data-elpv", lambda _, __: ["check-data", "elpv"]),
    Measurement(
        "predict-photos",
        lambda i, side: ["predict", _own_run(i, side), _given(i.photos), "--format", "csv"],
        needs=("own_runs", "photos"),
    ),
    Measurement(
        "few-label-fit",
        lambda i, _: ["fit", "--data", _given(i.manifest), "--image-size", "96"],
        needs=("manifest",),
        target="≤ 30 s",
        met=lambda _, new: new <= 30,
    ),
    Measurement(
        "rank",
        lambda i, _: ["rank", "--data", _given(i.manifest), "--models", PACKAGED],
        needs=("manifest",),
        target="< 20 s",
        met=lambda _, new: new < 20,
    ),
    Measurement("photo-fit", lambda i, _: ["fit", "--data", _given(i.photo_set)], needs=("photo_set",)),
    Measurement("elpv-fit", lambda _, __: ["fit"], target="≥ 1.5x", met=lambda old, new: old / new >= 1.5),
)
BY_NAME = {m.name: m for m in MEASUREMENTS}


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


@contextmanager
def checked_out(commit: str, folder: Path) -> Iterator[Path]:
    """A detached worktree of `commit`, removed again afterwards."""
    git("worktree", "add", "--detach", "--quiet", str(folder), commit)
    try:
        yield folder
    finally:
        git("worktree", "remove", "--force", str(folder))


def transferkit(
    worktree: Path, argv: list[str], folder: Path, cache: Path | None = None
) -> tuple[float, str]:
    """`python -m transferkit ARGV` with `worktree`'s package, run in the new `folder` (with `cache`, by
    default its own empty cache there): its wall time in seconds and its stdout."""
    folder.mkdir(parents=True)
    cache = cache or folder / "cache"
    env = {**os.environ, "PYTHONPATH": str(worktree / "src"), "TRANSFERKIT_CACHE": str(cache)}
    command = [sys.executable, "-m", "transferkit", *argv]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{worktree.name}: `transferkit {' '.join(argv)}` failed ({result.returncode}):\n"
            f"{result.stderr[-3000:]}"
        )
    return wall, result.stdout


def prepare_worktree(worktree: Path, scratch: Path) -> None:
    """Byte-compiles the sources (the worktree is new) and checks that its own package is the one run."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(worktree / "src")], check=True)
    probe = "import transferkit; print(transferkit.__file__)"
    env = {**os.environ, "PYTHONPATH": str(worktree / "src")}
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    if not Path(found.stdout.strip()).is_relative_to(worktree):
        raise SystemExit(f"{worktree}: the child imported {found.stdout.strip()}, not the worktree's package")
    transferkit(worktree, ["--help"], scratch)


def make_inputs(needs: set[str], sides: dict[str, Path], scratch: Path) -> Inputs:
    run = images = manifest = own_runs = photos = photo_set = None
    if "run" in needs:
        print(f"input: `transferkit {' '.join(BUNDLE_RECIPE)}` with the old commit", file=sys.stderr)
        _, stdout = transferkit(sides["old"], BUNDLE_RECIPE, scratch / "bundle")
        run = run_dir(stdout, scratch / "bundle")
    if "own_runs" in needs:
        own_runs = {}
        for side, worktree in sides.items():
            print(f"input: `transferkit {' '.join(BUNDLE_RECIPE)}` with the {side} commit", file=sys.stderr)
            _, stdout = transferkit(worktree, BUNDLE_RECIPE, scratch / f"bundle-{side}")
            own_runs[side] = run_dir(stdout, scratch / f"bundle-{side}")
    if "images" in needs:
        images = write_digits(scratch / "predict-images", range(PREDICT_IMAGES))
    if "manifest" in needs:
        manifest = write_few_label_manifest(scratch / "few-label")
    if "photos" in needs:
        photos = write_photos(scratch / "photos")
    if "photo_set" in needs:
        photo_set = write_photos(scratch / "photo-set", PHOTO_SET, PHOTO_SET_SIZE, tint=PHOTO_SET_TINT)
    return Inputs(
        run=run, own_runs=own_runs, images=images, manifest=manifest, photos=photos, photo_set=photo_set
    )


def write_photos(
    folder: Path, count: int = PHOTOS, size: tuple[int, int] = PHOTO_SIZE, tint: int = 0
) -> Path:
    """`count` JPEG files of `size` (quality 90) in folders a/ and b/: smooth colour fields with grain,
    what a camera photo holds, so their files are of a photo's size (about 3 MB at PHOTO_SIZE); b's red
    channel is `tint` higher, so that the classes can be told apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = size
    for index in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size)
        grain = rng.normal(0, 6, (height, width, 3)).astype(np.float32)
        shade = np.array([tint * (index % 2), 0, 0], np.float32)
        pixels = np.clip(np.asarray(coarse, np.float32) + grain + shade, 0, 255).astype(np.uint8)
        (folder / "ab"[index % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / "ab"[index % 2] / f"{index:03d}.jpg", quality=90)
    return folder


def write_digits(folder: Path, indices: Iterable[int]) -> Path:
    """scikit-learn's digits `indices` as 8x8 grayscale PNG files named by index."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True)
    pixels = (load_digits().images * (255.0 / 16.0)).round().astype("uint8")
    for index in indices:
        Image.fromarray(pixels[index], mode="L").save(folder / f"{index:04d}.png")
    return folder


def write_few_label_manifest(folder: Path) -> Path:
    """labels.csv: digits 0 to 7, the first LABELS_PER_CLASS of each class in train, the rest in test."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    chosen = [i for i, label in enumerate(target) if label < FEW_LABEL_CLASSES]
    write_digits(folder / "images", chosen)
    seen: dict[int, int] = {}
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for index in chosen:
            label = int(target[index])
            seen[label] = seen.get(label, 0) + 1
            split = "train" if seen[label] <= LABELS_PER_CLASS else "test"
            writer.writerow([f"images/{index:04d}.png", str(label), split])
    return folder / "labels.csv"


def run_dir(stdout: str, cwd: Path) -> Path:
    """The run directory of a `fit`, from the report path it prints (relative to the folder it ran in)."""
    return cwd / Path(stdout.split("report: ")[1].split(maxsplit=1)[0]).parent


def extras(
    measurement: str, side: str, stdout: str, cwd: Path, *, inputs: Inputs, wall: float
) -> dict[str, Any]:
    """Images/s of predict, evaluate and check-data; the test accuracies of a fit."""
    if measurement.endswith("photos"):
        return {"images": PHOTOS, "images_per_s": PHOTOS / wall}
    if measurement == "check-data-elpv":
        return {"images": ELPV_IMAGES, "images_per_s": ELPV_IMAGES / wall}
    if measurement.startswith("predict"):
        return {"images": PREDICT_IMAGES, "images_per_s": PREDICT_IMAGES / wall}
    if measurement.startswith("evaluate"):
        run = _own_run(inputs, side) if measurement == "evaluate-own-run" else _given(inputs.run)
        images = count_test_images(run)
        return {"images": images, "images_per_s": images / wall}
    if "report: " not in stdout:
        return {}
    headline = json.loads((run_dir(stdout, cwd) / "metrics.json").read_text())["headline"]
    return {key: headline[key] for key in ("accuracy", "binary_accuracy") if key in headline}


def count_test_images(run: str) -> int:
    """The run's test split, which `evaluate RUN` scores again: the rows of its predictions.csv."""
    with open(Path(run) / "predictions.csv", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def measure(
    measurement: Measurement, sides: dict[str, Path], inputs: Inputs, repeats: int, scratch: Path
) -> list[dict[str, Any]]:
    caches = {side: scratch / f"{measurement.name}-{side}-warm-up" / "cache" for side in sides}
    if measurement.warm_up or measurement.again:
        for side, worktree in sides.items():
            transferkit(worktree, measurement.argv(inputs, side), caches[side].parent)
    rows = []
    for repeat in range(repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for side in order:
            cwd = scratch / f"{measurement.name}-{side}-{repeat}"
            cache = caches[side] if measurement.again else None
            wall, stdout = transferkit(sides[side], measurement.argv(inputs, side), cwd, cache)
            row = {"measurement": measurement.name, "side": side, "repeat": repeat, "wall_s": wall}
            rows.append(row | extras(measurement.name, side, stdout, cwd, inputs=inputs, wall=wall))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def median_of(rows: list[dict[str, Any]], name: str, side: str, key: str = "wall_s") -> float:
    return statistics.median(r[key] for r in rows if r["measurement"] == name and r["side"] == side)


def summary(rows: list[dict[str, Any]], measurement: Measurement) -> dict[str, Any]:
    old, new = (median_of(rows, measurement.name, side) for side in ("old", "new"))
    met = "" if measurement.met is None else ("yes" if measurement.met(old, new) else "no")
    return {"name": measurement.name, "old": old, "new": new, "target": measurement.target, "met": met}


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """Per measurement and side, the medians of what each run reported besides its time."""
    lines = []
    for name in dict.fromkeys(r["measurement"] for r in rows):
        for key in ("images_per_s", "accuracy", "binary_accuracy"):
            if any(key in r for r in rows if r["measurement"] == name):
                old, new = (median_of(rows, name, side, key) for side in ("old", "new"))
                lines.append(f"- {name}, {key}: old {old:.4g}, new {new:.4g}")
    return lines


def markdown(rows: list[dict[str, Any]], measurements: list[Measurement], context: dict[str, str]) -> str:
    lines = [
        "# transferkit speed: old commit against new commit",
        "",
        f"Command: `{context['command']}`",
        "",
        f"- old: {context['old']}",
        f"- new: {context['new']}",
        f"- machine: {context['machine']}",
        "",
        "Medians of each side's runs, each `python -m transferkit ...` in its own process with an empty "
        "cache, but the -again rows: each of their runs reuses the cache an untimed first run of the same "
        "command filled on that side (what a user's second command pays). Inputs, shared by both sides:",
        "",
        f"- predict, evaluate: the run of `transferkit {' '.join(BUNDLE_RECIPE)}` with the old commit; "
        f"predict classifies {PREDICT_IMAGES} digits PNG files, evaluate the run's test split",
        "- predict-own-bundle: the same, with the bundle each side's own commit fitted (what a user of "
        "that version predicts with: a newer fit keeps the ONNX graph it evaluated with)",
        "- evaluate-own-run: evaluate with the run each side's own commit fitted, for the same reason",
        f"- few-label-fit, rank: digits 0 to {FEW_LABEL_CLASSES - 1}, {LABELS_PER_CLASS} labels per class "
        "(72 train, 8 validation), 1,363 test images; fit at 96 px, default strategy; rank of "
        f"{PACKAGED}",
        f"- check-data-photos, predict-photos: {PHOTOS} JPEG files of {PHOTO_SIZE[0]} x {PHOTO_SIZE[1]} "
        "pixels (quality 90, smooth colour fields with grain), checked as an image folder, or classified "
        "with the bundle each side's own commit fitted; check-data-elpv: `transferkit check-data elpv` "
        f"({ELPV_IMAGES} PNG files of 300 x 300 pixels)",
        f"- photo-fit: `transferkit fit` on {PHOTO_SET} JPEG files of {PHOTO_SET_SIZE[0]} x "
        f"{PHOTO_SET_SIZE[1]} pixels in two class folders (the same fields, one class's red "
        f"{PHOTO_SET_TINT} levels higher): the default recipe for photos, at 224 px with random crops and "
        "flips",
        "- elpv-fit: `transferkit fit`, the embedded default",
        "",
        "| measurement | old median s | new median s | speed-up (old/new) | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for s in (summary(rows, m) for m in measurements):
        lines.append(
            f"| {s['name']} | {s['old']:.2f} | {s['new']:.2f} | {s['old'] / s['new']:.2f}x | "
            f"{s['target']} | {s['met']} |"
        )
    extra = notes(rows)
    return "\n".join([*lines, *(["", "Also measured:", "", *extra] if extra else []), ""])


def describe(commit: str) -> str:
    """The short hash, date and subject of `commit` (the subject cut at 100 characters)."""
    described = git("log", "-1", "--format=%h (%cs) %s", commit).strip()
    return described if len(described) <= 120 else described[:119] + "…"


def machine(load_before: tuple[float, ...]) -> str:
    load = ", ".join(f"{x:.2f}" for x in load_before)
    after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{_cpu()}; torch {metadata.version('torch')}, Python {sys.version.split()[0]}; "
        f"load average (1, 5, 15 min) {load} before, {after} after"
    )


def selected(args: argparse.Namespace) -> list[Measurement]:
    if args.only:
        return [BY_NAME[name] for name in args.only]
    return [m for m in MEASUREMENTS if m.name != "elpv-fit" or args.elpv]


def run_all(args: argparse.Namespace, measurements: list[Measurement], scratch: Path) -> list[dict[str, Any]]:
    with (
        checked_out(args.old, scratch / "old") as old,
        checked_out(args.new, scratch / "new") as new,
    ):
        sides = {"old": old, "new": new}
        for side, worktree in sides.items():
            prepare_worktree(worktree, scratch / f"prepare-{side}")
        # the page cache holds the heavy libraries before the first timed run of either side
        subprocess.run([sys.executable, "-c", "import torch, timm, lightning, sklearn, PIL"], check=True)
        inputs = make_inputs({need for m in measurements for need in m.needs}, sides, scratch / "inputs")
        return [row for m in measurements for row in measure(m, sides, inputs, args.repeats, scratch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="ef6807b", help="commit to compare against (default: ef6807b)")
    parser.add_argument(
        "--new", default="HEAD", help="commit measured (default: HEAD, without uncommitted changes)"
    )
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), metavar="NAME", help=", ".join(BY_NAME))
    parser.add_argument(
        "--elpv", action="store_true", help="also elpv-fit: `transferkit fit` (10 min a side)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--name", default="speed", help="results/NAME.{csv,md}; a partial run gets its own (default: speed)"
    )
    args = parser.parse_args()
    measurements = selected(args)
    context = {"old": describe(args.old), "new": describe(args.new)}
    context["command"] = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="transferkit-speed-") as scratch:
        rows = run_all(args, measurements, Path(scratch))
    context["machine"] = machine(load_before)
    for row in rows:
        row["commit"] = context[row["side"]].split()[0]
    fields = ["measurement", "side", "commit", "repeat", "wall_s", "images", "images_per_s", "accuracy"]
    write_csv(args.name, rows, [*fields, "binary_accuracy"])
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, measurements, context))
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
