"""The run directory: where every output of `fit` lives, and the manifest that makes it reproducible."""

from __future__ import annotations

import datetime as dt
import fcntl
import platform
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from transferkit.errors import RunError

RUN_DIR_ENV = "TRANSFERKIT_RUN_DIR"  # tells the worker processes of a multi-process run where to write

PACKAGES = ("transferkit", "torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "pillow")


@dataclass(frozen=True)
class RunPaths:
    """Every file `fit` writes, relative to one root."""

    root: Path

    @classmethod
    def create(cls, out: str | Path, data: str, model: str) -> RunPaths:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{_slug(data)}-{_slug(model)}"
        Path(out).mkdir(parents=True, exist_ok=True)
        root, suffix = Path(out) / name, 1
        while True:
            try:
                root.mkdir()  # claims the name atomically, even against a second process
                break
            except FileExistsError:
                suffix += 1
                root = Path(out) / f"{name}-{suffix}"
        (root / "plots").mkdir()
        return cls(root)

    @classmethod
    def at(cls, root: str | Path) -> RunPaths:
        """A new run directory at exactly `root`, e.g. one agreed on by every process of a cluster job."""
        try:
            Path(root).mkdir(parents=True)
        except FileExistsError:
            raise RunError(f"Run directory {root} exists already; give each run a new folder.") from None
        (Path(root) / "plots").mkdir()
        return cls(Path(root))

    @classmethod
    def existing(cls, root: str | Path) -> RunPaths:
        """An interrupted run's directory, to resume; a finished or foreign folder is refused."""
        paths = cls(Path(root))
        if not paths.config.is_file():
            raise RunError(
                f"{root} is not a transferkit run directory (no config.yaml); give the folder fit made."
            )
        if paths.report_md.exists():
            raise RunError(f"{root} finished already (report.md is written); start a new run instead.")
        return paths

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the run directory for this process; a second process gets a RunError, not a mixed run."""
        with (self.root / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"{self.root} is in use by another transferkit process; wait for it or stop it first."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def history(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def data_checks(self) -> Path:
        return self.root / "data_checks.json"

    @property
    def model_choice(self) -> Path:
        return self.root / "model_choice.json"

    @property
    def oof_predictions(self) -> Path:
        return self.root / "oof_predictions.csv"

    def fold(self, number: int) -> RunPaths:
        """The directory of one cross-validation fold's model, ``folds/fold-N`` (kept for a resume: a
        finished fold keeps its weights, not its Lightning checkpoints)."""
        return self._model_inside("folds", f"fold-{number}")

    def teacher(self) -> RunPaths:
        """The directory of a self-training run's teacher, ``teacher`` (kept for a resume, as a fold's)."""
        return self._model_inside("teacher")

    def _model_inside(self, *parts: str) -> RunPaths:
        """The directory of a model this run trains on the way to its own, created if need be."""
        root = self.root.joinpath(*parts)
        (root / "plots").mkdir(parents=True, exist_ok=True)
        return RunPaths(root)

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """Where an interrupted run resumes from: written every few steps and at each epoch end."""
        return self.checkpoints / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def start_weights(self) -> Path:
        """The weights with the head fitted on frozen features, before fine-tuning: one end of WiSE-FT."""
        return self.checkpoints / "start.pt"

    @property
    def trained_weights(self) -> Path:
        """The weights training ended with: a run resumed after this point goes straight to evaluation."""
        return self.checkpoints / "trained.pt"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def task_model(self, name: str) -> Path:
        """The bundle of another label's classifier on the run's network (``data.aux_label``)."""
        return self.root / "tasks" / name

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name if "/" in text else text).strip("_") or "run"


def build_manifest(seed: int, data_sha256: str, weights_sha256: str | None) -> dict[str, Any]:
    """Versions, seed, git commit and hashes: what is needed to tell whether two runs are comparable."""
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
        "data_sha256": data_sha256,
        "weights_sha256": weights_sha256,
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
