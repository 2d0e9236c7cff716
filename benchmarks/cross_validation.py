"""`transferkit fit --folds K` on ELPV: per-fold and out-of-fold metrics, and the test accuracy of both
final models (refit on every train image, ensemble of the fold models), each run as its own process.

    python benchmarks/cross_validation.py --folds 5
    python benchmarks/cross_validation.py --folds 5 --name cross_validation_quick -- --set data.subset=800 \\
        --image-size 128 --epochs 3

The test split is read once per final model; every choice inside (the temperature, the WiSE-FT
weights) is made on the out-of-fold predictions. The fold models are trained once: the second final
model resumes a copy of the first run with its folds finished (a fold's weights depend only on the seed
and the fold's number, so the resume trains only what differs), and its wall time is that of the rest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from default_fit import RESULTS, _cpu, _source_state, write_csv

FINALS = ("refit", "ensemble")
METRICS = ("binary_accuracy", "accuracy", "balanced_accuracy", "macro_f1")


def run_final(command: list[str], final: str) -> dict[str, Any]:
    """One cross-validated fit in a child process; its run directory, metrics.json and wall time."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "transferkit", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{final} failed:\n{result.stderr[-3000:]}")
    run = Path(result.stdout.split("report: ")[1].split()[0]).parent
    metrics = json.loads((run / "metrics.json").read_text())
    return {"final": final, "run": run, "metrics": metrics, "wall_min": (time.perf_counter() - started) / 60}


def with_finished_folds(run: Path, final: str) -> Path:
    """A copy of `run` whose final model is `final` and whose folds are finished: its config.yaml with
    ``cv.final`` replaced, its data manifest and its folds, ready for ``fit --resume``."""
    from transferkit.config import FitConfig

    clone = run.with_name(f"{run.name}-{final}")
    (clone / "plots").mkdir(parents=True)
    config = FitConfig.from_yaml(run / "config.yaml").with_overrides({"cv.final": final})
    (clone / "config.yaml").write_text(config.to_yaml())
    shutil.copy2(run / "manifest.json", clone / "manifest.json")
    shutil.copytree(run / "folds", clone / "folds")
    return clone


def run_both(folds: int, out: Path, extra: list[str], resume: Path | None = None) -> list[dict[str, Any]]:
    """The refit run (or the resumption of one that stopped), then the ensemble run resumed from a copy
    of its finished folds."""
    first, second = FINALS
    command = ["fit", "--folds", str(folds), "--folds-final", first, "--out", str(out), *extra]
    refit = run_final(["fit", "--resume", str(resume)] if resume else command, first)
    ensemble = run_final(["fit", "--resume", str(with_finished_folds(refit["run"], second))], second)
    return [refit, ensemble]


def rows_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per fold, then the out-of-fold row and the test row of the final model."""
    cv, final = run["metrics"]["cv"], run["final"]
    rows = [{"final": final, "part": f"fold {row['fold'] + 1}", **_pick(row)} for row in cv["folds"]]
    rows.append({"final": final, "part": "folds mean", **_pick(cv["mean"])})
    rows.append({"final": final, "part": "folds sd", **_pick(cv["sd"])})
    rows.append({"final": final, "part": "out-of-fold", **_pick(_flat(cv["out_of_fold"]))})
    test = {**_pick(run["metrics"]["headline"]), "wall_min": run["wall_min"]}
    rows.append({"final": final, "part": "test (final model)", **test})
    return rows


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {key: metrics[key] for key in ("accuracy", "balanced_accuracy", "macro_f1")}
    for name, grouped in metrics.get("groupings", {}).items():
        flat[f"{name}_accuracy"] = grouped["accuracy"]
    return flat


def _pick(values: dict[str, Any]) -> dict[str, float]:
    return {key: float(values[key]) for key in METRICS if key in values}


def markdown(rows: list[dict[str, Any]], command: str, resumed: str = "") -> str:
    keys = [*METRICS, "wall_min"]
    lines = [
        "# Cross-validation on ELPV: folds, out-of-fold, and the two final models on test",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}.",
        "",
        "The fold models are trained once, in the refit run: its wall time covers the folds and the refit."
        " The ensemble run resumes a copy of that run with its folds finished, so its wall time covers the"
        " rest: the out-of-fold choices, the ensemble, its test pass and the report.",
        *(["", resumed] if resumed else []),
        "",
        "| final | part | " + " | ".join(keys) + " |",
        "| --- | --- |" + " ---: |" * len(keys),
    ]
    for row in rows:
        cells = [f"{row[k]:.4f}" if k in row else "" for k in keys]
        lines.append(f"| {row['final']} | {row['part']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cv"))
    parser.add_argument("--name", default="cross_validation")
    parser.add_argument(
        "--resume-refit",
        type=Path,
        metavar="RUN_DIR",
        help="resume the refit run of an earlier invocation that stopped (its wall time is then the rest)",
    )
    parser.add_argument("extra", nargs="*", help="extra flags for `transferkit fit`, after --")
    args = parser.parse_args()
    runs = run_both(args.folds, args.out, args.extra, args.resume_refit)
    rows = [row for run in runs for row in rows_of(run)]
    command = f"python benchmarks/cross_validation.py --folds {args.folds}"
    if args.extra:
        command += f" --name {args.name} -- {' '.join(args.extra)}"
    resumed = ""
    if args.resume_refit:
        command += f" --resume-refit {args.resume_refit}"
        resumed = (
            "The refit run was resumed: its folds were trained by an earlier invocation that stopped, so "
            "the refit wall time covers only what was left."
        )
    write_csv(args.name, rows, ["final", "part", *METRICS, "wall_min"])
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, command, resumed))
    print(markdown(rows, command, resumed))


if __name__ == "__main__":
    main()
