"""The run directory: where every output of `fit` lives, and the manifest that makes it reproducible."""

from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

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
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"

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
