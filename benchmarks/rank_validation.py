"""Does `transferkit rank` order candidate models as fine-tuning them does, and how much sooner?

For each dataset, a pool of candidates is fine-tuned with the default strategy (test accuracy) and
ranked by every transferability score; Kendall's tau between each score and the fine-tuned accuracy
says how well the score orders them, and the wall times say what ranking saves. The pool:

- the packaged EfficientNet-Lite0/1/2 with their ImageNet weights;
- a transferkit run fine-tuned on the other dataset (``run:``): Lite0 on digits for ELPV, and Lite0 on
  the ELPV subset (4 classes) for digits;
- random-init Lite0 and Lite2 as negative controls.

Every fit and the ranking of a dataset read the images at one size. The ranking is timed as
`transferkit rank` runs by default (every built-in score, no race) with empty caches, so it decodes and
extracts everything itself; the tables come from a second ranking on the cached features, with the
race and an extra score, `hscore-pinv` (the original H-score without covariance shrinkage, registered
here through `register_score` for comparison). Both sides are timed in the same invocation: finished
fits are logged in OUT/finetuned.jsonl, and only `--reuse-fits` takes them in a later one (the timing
table then says so).

    python benchmarks/rank_validation.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from scipy.stats import kendalltau

import transferkit
from default_fit import _cpu, _source_state
from transferkit.config import DataConfig
from transferkit.ranking import Candidate, Ranking, hscore, rank, register_score
from transferkit.ranking.base import ScoreInputs

RESULTS = Path(__file__).parent / "results"
NAME = "rank_validation"
SCORES = ["logme", "hscore", "hscore-pinv", "leep", "nce"]
POOL = (
    Candidate("efficientnet_lite0"),
    Candidate("efficientnet_lite1"),
    Candidate("efficientnet_lite2"),
    Candidate("efficientnet_lite0", pretrained=False),
    Candidate("efficientnet_lite2", pretrained=False),
)
IMAGENET = {c.label for c in POOL if c.pretrained}
SOURCE_OF_TRANSFER = {"elpv": "digits", "digits": "elpv"}  # the run: candidate was fine-tuned there


@register_score("hscore-pinv", "Bao et al., ICIP 2019, without shrinkage (for comparison)")
def hscore_pinv(inputs: ScoreInputs) -> float:
    return hscore(inputs.features, inputs.labels, inputs.num_classes, shrinkage=0.0)


@dataclass(frozen=True)
class Protocol:
    """One dataset's reduced protocol: the same subset, size and epochs for every candidate."""

    data: str
    image_size: int
    epochs: int
    subset: int | None

    def data_config(self) -> DataConfig:
        return DataConfig(name=self.data, subset=self.subset)

    def describe(self) -> str:
        subset = f"a stratified subset of {self.subset} images" if self.subset else "all images"
        return f"{self.data}: {subset}, {self.image_size} px, {self.epochs} fine-tuning epoch(s)"


@dataclass(frozen=True)
class FineTuned:
    accuracy: float
    wall_s: float
    run_dir: str
    wise_alpha: float | None  # the WiSE-FT weight the run chose: 0 keeps its start's backbone


def fine_tune(protocol: Protocol, candidate: Candidate, out: Path) -> FineTuned:
    """The default strategy on the protocol; the run's own wall time (model load to report).

    Finished fits are logged to OUT/finetuned.jsonl; with --reuse-fits a later invocation takes them.
    """
    log = out / "finetuned.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    for entry in done:
        if (entry["data"], entry["model"]) == (protocol.data, candidate.label):
            return FineTuned(entry["accuracy"], entry["wall_s"], entry["run_dir"], entry.get("wise_alpha"))
    dotted: dict[str, Any] = {"data.subset": protocol.subset}
    run = transferkit.fit(
        data=protocol.data,
        model=candidate.spec,
        pretrained=candidate.pretrained,
        epochs=protocol.epochs,
        image_size=protocol.image_size,
        out=str(out / protocol.data),
        **dotted,
    )
    alpha = (json.loads(run.paths.metrics.read_text()).get("weight_choice") or {}).get("alpha")
    tuned = FineTuned(float(run.headline["accuracy"]), run.wall_time_s, str(run.dir), alpha)
    entry = {"data": protocol.data, "model": candidate.label, **asdict(tuned), "headline": run.headline}
    with log.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    return tuned


def timed_rank(
    protocol: Protocol, candidates: list[Candidate], methods: str | list[str], race: bool
) -> tuple[Ranking, float]:
    started = time.perf_counter()
    ranking = rank(protocol.data_config(), candidates, methods, race=race, image_size=protocol.image_size)
    return ranking, time.perf_counter() - started


def use_cache(folder: Path, fresh: bool) -> None:
    """Points transferkit's decoded-image and feature caches at `folder`, emptied first when `fresh`."""
    if fresh and folder.exists():
        shutil.rmtree(folder)
    os.environ["TRANSFERKIT_CACHE"] = str(folder)


def validate(protocols: dict[str, Protocol], out: Path, *, reuse_fits: bool) -> dict[str, Any]:
    """Fine-tunes and ranks every candidate on every dataset; returns the rows, taus and times. Both
    sides are timed in this invocation unless `reuse_fits` takes fine-tunings from an earlier one."""
    out.mkdir(parents=True, exist_ok=True)
    if not reuse_fits:
        (out / "finetuned.jsonl").unlink(missing_ok=True)
    use_cache(out / "cache-fit", fresh=False)
    tuned = {(data, c.label): fine_tune(p, c, out) for data, p in protocols.items() for c in POOL}
    transfers = {
        data: Candidate(f"run:{tuned[(source, 'efficientnet_lite0')].run_dir}")
        for data, source in SOURCE_OF_TRANSFER.items()
        if data in protocols and source in protocols
    }
    for data, candidate in transfers.items():
        tuned[(data, candidate.label)] = fine_tune(protocols[data], candidate, out)
    results: dict[str, Any] = {"rows": [], "taus": [], "times": []}
    for data, protocol in protocols.items():
        candidates = [*POOL, *([transfers[data]] if data in transfers else [])]
        use_cache(out / f"cache-rank-{data}", fresh=True)
        # What a user runs: `transferkit rank` with every built-in score, decoding and extracting all.
        _, cold_s = timed_rank(protocol, candidates, "all", race=False)
        # The figures reported: features from the cache now, plus the race and the extra hscore-pinv.
        ranking, warm_s = timed_rank(protocol, candidates, SCORES, race=True)
        rows = [_row(data, result, tuned[(data, result.label)]) for result in ranking.candidates]
        results["rows"] += rows
        results["taus"] += [_tau(data, rows, score) for score in [*SCORES, "race_accuracy"]]
        fit_s = sum(row["finetune_s"] for row in rows)
        results["times"].append(
            {
                "data": data,
                "rank_s": cold_s,
                "rank_cached_s": warm_s,
                "finetune_all_s": fit_s,
                "fits_reused": reuse_fits,
            }
        )
    return results


def _row(data: str, result: Any, tuned: FineTuned) -> dict[str, Any]:
    return {
        "data": data,
        "model": result.label,
        "parameters": result.parameters,
        "images_per_second": result.images_per_second,
        **result.scores,
        "race_accuracy": result.race_accuracy,
        "finetuned_accuracy": tuned.accuracy,
        "finetune_s": tuned.wall_s,
        "wise_alpha": tuned.wise_alpha,
    }


def _tau(data: str, rows: list[dict[str, Any]], score: str) -> dict[str, Any]:
    pairs = [(row[score], row["finetuned_accuracy"]) for row in rows if row[score] is not None]
    statistic, p_value = kendalltau([s for s, _ in pairs], [a for _, a in pairs])
    return {
        "data": data,
        "score": score,
        "tau": float(statistic),
        "p_value": float(p_value),
        "n": len(pairs),
        "controls_last": controls_last(rows, score),
    }


def controls_last(rows: list[dict[str, Any]], column: str) -> bool:
    """Whether every packaged ImageNet model scores above every random-init control."""
    imagenet = [row[column] for row in rows if row["model"] in IMAGENET and row[column] is not None]
    controls = [row[column] for row in rows if "random init" in row["model"] and row[column] is not None]
    return min(imagenet) > max(controls)


def write_results(results: dict[str, Any], protocols: dict[str, Protocol], command: str, commit: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{NAME}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results["rows"][0]))
        writer.writeheader()
        writer.writerows(results["rows"])
    (RESULTS / f"{NAME}.md").write_text(markdown(results, protocols, command, commit))
    plot(results, RESULTS / f"{NAME}.png")


def markdown(results: dict[str, Any], protocols: dict[str, Protocol], command: str, commit: str) -> str:
    lines = [
        "# `transferkit rank` against fine-tuning every candidate",
        "",
        f"Command: `{command}` at commit {commit}, on {_machine()}; load average (1, 5, 15 min) "
        f"{results['load_before']} at the start, {results['load_after']} at the end.",
        "",
        "Protocol (reduced to fit a 2-core CPU; see Deviations):",
        "",
        *[f"- {protocol.describe()}" for protocol in protocols.values()],
        "- fine-tuning: `transferkit.fit`, default strategy and settings otherwise; score: test accuracy",
        "- ranking: `transferkit.ranking.rank(..., race=True)` on the same train split and image size",
        "",
    ]
    lines += _deviations(results["rows"]) + _timing_table(results["times"])
    lines += _tau_table(results["taus"], results["rows"])
    for data in protocols:
        lines += _candidate_table(data, [row for row in results["rows"] if row["data"] == data])
    return "\n".join(lines) + "\n"


def _deviations(rows: list[dict[str, Any]]) -> list[str]:
    kept = sum(row["wise_alpha"] == 0 for row in rows)
    return [
        *DEVIATIONS,
        f"- The default picks its final weights on validation among the fitted head on frozen features and "
        f"WiSE-FT interpolations toward the fine-tuned network (column wise_alpha: 0 keeps the start's "
        f"backbone, 1 the fine-tuned one). After so few epochs {kept} of {len(rows)} fits kept alpha = 0, so "
        "the fine-tuned accuracy often measures the start's frozen features, and a `run:` candidate whose "
        "own run kept alpha = 0 carries its ancestor's backbone.",
        "",
    ]


DEVIATIONS = [
    "## Deviations from the full protocol",
    "",
    "- ELPV: a stratified subset of 1,000 images (`data.subset`) instead of all 2,624, split as the full set "
    "is (675 train, 75 validation, 250 test); a 250-image test split gives a standard error of about 3 "
    "points of accuracy, as large as most differences between the ImageNet models.",
    "- Smaller images (ELPV 128 px instead of 224-260 px; digits 64 px) and 1-2 fine-tuning epochs instead "
    "of the default 7.",
    "- One seed per candidate; the pool has six candidates per dataset, so one swapped pair moves tau by "
    "about 0.13.",
]


def _timing_table(times: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Wall time",
        "",
        "| data | rank, empty caches (s) | rank --race, features cached (s) | fine-tune every candidate (s) "
        "| fine-tune / rank | fine-tune / cached rank --race |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in times:
        ratio, cached = row["finetune_all_s"] / row["rank_s"], row["finetune_all_s"] / row["rank_cached_s"]
        lines.append(
            f"| {row['data']} | {row['rank_s']:.0f} | {row['rank_cached_s']:.1f} | "
            f"{row['finetune_all_s']:.0f} | {ratio:.1f}x | {cached:.0f}x |"
        )
    if any(row.get("fits_reused") for row in times):
        lines += [
            "",
            "The fine-tunings were reused from an earlier invocation: the ratios mix two runs' times.",
        ]
    return [*lines, ""]


def _tau_table(taus: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    datasets = list(dict.fromkeys(row["data"] for row in taus))
    scores = list(dict.fromkeys(row["score"] for row in taus))
    lookup = {(row["data"], row["score"]): row for row in taus}
    lines = [
        "## Kendall's tau between each score and the fine-tuned test accuracy",
        "",
        "Controls last: every packaged ImageNet model scores above both random-init controls.",
        "",
        "| score | " + " | ".join(f"{d}: tau (p, n) | {d}: controls last" for d in datasets) + " |",
        "| --- |" + " ---: | :---: |" * len(datasets),
    ]
    for score in scores:
        cells = [lookup[(d, score)] for d in datasets]
        lines.append(
            f"| {score} | "
            + " | ".join(
                f"{c['tau']:+.2f} ({c['p_value']:.2f}, {c['n']}) | {_yes(c['controls_last'])}" for c in cells
            )
            + " |"
        )
    reference = [
        f"{d}: {_yes(controls_last([r for r in rows if r['data'] == d], 'finetuned_accuracy'))}"
        for d in datasets
    ]
    lines += ["", f"Fine-tuned accuracy itself puts the controls last: {', '.join(reference)}."]
    return [*lines, ""]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _candidate_table(data: str, rows: list[dict[str, Any]]) -> list[str]:
    columns = [
        "parameters",
        "images_per_second",
        *SCORES,
        "race_accuracy",
        "finetuned_accuracy",
        "finetune_s",
        "wise_alpha",
    ]
    lines = [
        f"## {data}: candidates, best LogME first",
        "",
        "| model | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for row in rows:
        lines.append(f"| {_short(row['model'])} | " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return [*lines, ""]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"


def _short(label: str) -> str:
    return f"run:{Path(label[4:]).name}" if label.startswith("run:") else label


def plot(results: dict[str, Any], path: Path) -> None:
    """One row per dataset, one panel per score: score against fine-tuned accuracy, tau in the title."""
    datasets = list(dict.fromkeys(row["data"] for row in results["rows"]))
    scores = [*SCORES, "race_accuracy"]
    taus = {(row["data"], row["score"]): row["tau"] for row in results["taus"]}
    figure = Figure(figsize=(3.2 * len(scores), 3.0 * len(datasets)), layout="constrained")
    grid = figure.subplots(len(datasets), len(scores), squeeze=False)
    for axes_row, data in zip(grid, datasets, strict=True):
        rows = [row for row in results["rows"] if row["data"] == data]
        for axes, score in zip(axes_row, scores, strict=True):
            points = [
                (row["finetuned_accuracy"], row[score], row["model"])
                for row in rows
                if row[score] is not None
            ]
            for accuracy, value, model in points:
                random_init = "random init" in model
                axes.scatter(
                    accuracy,
                    value,
                    marker="x" if random_init else "o",
                    color="#888" if random_init else "#4c72b0",
                )
            axes.set_title(f"{data}: {score} (tau {taus[(data, score)]:+.2f})", fontsize=9)
            axes.set_xlabel("fine-tuned test accuracy", fontsize=8)
            axes.tick_params(labelsize=7)
            axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


def _machine() -> str:
    return f"{_cpu()}, no GPU; torch {torch.__version__} with {torch.get_num_threads()} threads"


def _load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["elpv", "digits"], choices=["elpv", "digits"])
    parser.add_argument("--elpv-subset", type=int, default=1000)
    parser.add_argument("--elpv-size", type=int, default=128)
    parser.add_argument("--elpv-epochs", type=int, default=2)
    parser.add_argument("--digits-size", type=int, default=64)
    parser.add_argument("--digits-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rank"))
    parser.add_argument(
        "--reuse-fits",
        action="store_true",
        help="reuse fine-tunings logged by an earlier invocation (their times are then not this run's)",
    )
    args = parser.parse_args()
    every = {
        "elpv": Protocol("elpv", args.elpv_size, args.elpv_epochs, args.elpv_subset),
        "digits": Protocol("digits", args.digits_size, args.digits_epochs, None),
    }
    protocols = {name: every[name] for name in args.datasets}
    load_before = _load()
    results = validate(protocols, args.out, reuse_fits=args.reuse_fits)
    results.update(load_before=load_before, load_after=_load())
    flags = [
        f"--elpv-subset {args.elpv_subset} --elpv-size {args.elpv_size} --elpv-epochs {args.elpv_epochs}",
        f"--digits-size {args.digits_size} --digits-epochs {args.digits_epochs}",
    ]
    command = " ".join(
        ["python benchmarks/rank_validation.py", *flags, *(["--reuse-fits"] if args.reuse_fits else [])]
    )
    write_results(results, protocols, command, _source_state())
    (args.out / f"{NAME}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
