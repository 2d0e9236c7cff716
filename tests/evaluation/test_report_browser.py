"""report.html, rendered by headless Chromium, shows every plot and fits a laptop screen.

A copy of the report gets a small script that measures the laid-out page after load and writes the
result into the DOM, which ``--dump-dom`` then returns.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from transferkit.data.checks import BadImage, DataReport, DuplicateGroup, Spread
from transferkit.evaluation import ReportContext, write_reports
from transferkit.evaluation.plots import (
    plot_confident_mistakes,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_per_class_f1,
    plot_reliability,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium (Debian package 'chromium')"
)

CLASS_NAMES = [f"class_{i}_with_a_fairly_long_name" for i in range(8)]
# A grouping with this many groups gives a confusion table far wider than any laptop screen.
WIDE_GROUPS = 30
LONG_PATH = "/data/" + "very_long_folder_name_without_any_spaces_" * 6 + "image.png"

MEASURE = """
<script>
window.addEventListener("load", () => {
  const width = window.innerWidth;
  const scrolls = (element) => {
    for (let box = element.parentElement; box; box = box.parentElement) {
      if (["auto", "scroll", "hidden"].includes(getComputedStyle(box).overflowX)) return true;
    }
    return false;
  };
  const overflowing = Array.from(document.body.querySelectorAll("*"))
    .filter((el) => el.getBoundingClientRect().right > width + 0.5 && !scrolls(el))
    .map((el) => el.tagName + (el.className ? "." + el.className : ""));
  // Text can stick out of a box that itself fits, e.g. a long word that does not wrap.
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = texts.nextNode(); node; node = texts.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(node);
    if (range.getBoundingClientRect().right > width + 0.5 && !scrolls(node)) {
      overflowing.push("text in " + node.parentElement.tagName + ": " + node.textContent.slice(0, 40));
    }
  }
  const result = {
    innerWidth: width,
    scrollWidth: document.documentElement.scrollWidth,
    images: Array.from(document.images).map((img) => img.complete && img.naturalWidth > 0),
    overflowing: overflowing,
    scrollingBoxes: Array.from(document.querySelectorAll(".table-wrap, pre"))
      .filter((box) => box.scrollWidth > box.clientWidth).length,
  };
  const out = document.createElement("pre");
  out.id = "layout-result";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def _metrics() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 5, (8, 8)) + np.diag(rng.integers(20, 40, 8))
    per_class = [
        {"class": name, "precision": 0.8, "recall": 0.7, "f1": 0.74, "support": int(confusion[i].sum()),
         "f1_interval": [0.66, 0.81]}
        for i, name in enumerate(CLASS_NAMES)
    ]  # fmt: skip
    groups = [f"group_{i}" for i in range(WIDE_GROUPS)]
    bins = [
        {"lower": i / 10, "upper": (i + 1) / 10, "count": c, "confidence": i / 10 + 0.05, "accuracy": i / 10}
        for i, c in enumerate([0, 0, 1, 4, 9, 20, 30, 50, 80, 100])
    ]
    return {
        "num_samples": int(confusion.sum()),
        "accuracy": 0.788,
        "balanced_accuracy": 0.781,
        "macro_f1": 0.779,
        "log_loss": 0.61,
        "auroc": 0.93,
        "intervals": {k: [0.75, 0.82] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")},
        "resolution": 0.035,
        "top_k_accuracy": {"3": 0.93, "5": 0.97},
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "calibration": {"ece": 0.02, "bins": bins},
        "temperature_scaling": {
            "temperature": 1.6,
            "ece_before": 0.09,
            "ece_after": 0.02,
            "fitted_on": "val",
        },
        "tta": {
            "views": ["identity", "hflip"],
            "accuracy_without": 0.77,
            "accuracy_with": 0.788,
            "gain": 0.018,
        },
        "groupings": {
            "wide": {
                "accuracy": 0.5,
                "balanced_accuracy": 0.5,
                "macro_f1": 0.5,
                "auroc": 0.8,
                "intervals": {"accuracy": [0.4, 0.6]},
                "group_names": groups,
                "confusion_matrix": rng.integers(0, 1000, (WIDE_GROUPS, WIDE_GROUPS)).tolist(),
            }
        },
    }


def _plots(metrics: dict[str, Any], plots_dir: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(CLASS_NAMES), 20)
    probabilities = rng.dirichlet(np.ones(len(CLASS_NAMES)), 20)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in labels]
    history = [
        {"epoch": e, "phase": "head" if e < 3 else "fine-tune", "train_loss": 1 / e} for e in range(1, 6)
    ]
    gallery = plot_confident_mistakes(images, labels, probabilities, CLASS_NAMES, plots_dir / "mistakes.png")
    assert gallery is not None
    return {
        "Confusion matrix": plot_confusion_matrix(
            metrics["confusion_matrix"], CLASS_NAMES, plots_dir / "cm.png"
        ),
        "Learning curves": plot_learning_curves(history, plots_dir / "curves.png"),
        "Per-class F1": plot_per_class_f1(metrics, plots_dir / "f1.png"),
        "Reliability": plot_reliability(
            metrics["calibration"]["bins"], plots_dir / "reliability.png", 0.09, 0.02
        ),
        "Most confident mistakes": gallery,
    }


def _data_checks(root: Path) -> DataReport:
    leak = DuplicateGroup("exact", [1, 2], [LONG_PATH, LONG_PATH + ".copy"], ["train", "test"], ["a", "a"])
    return DataReport(
        num_images=300,
        root=str(root),
        class_names=CLASS_NAMES,
        counts={},
        widths=Spread(32, 64, 640),
        heights=Spread(32, 64, 480),
        modes={"RGB": 299},
        bad_images=[BadImage(7, LONG_PATH, "truncated", "train")],
        duplicates=[leak],
        imbalance=1.8,
        classes_without_train=[],
        errors=[f"1 image(s) cannot be read: {LONG_PATH}"],
        warnings=[],
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    metrics = _metrics()
    context = ReportContext(
        title="wide_dataset_name_without_spaces_" * 3 + " · tiny_net · fine-tune",
        run_dir=run_dir,
        metrics=metrics,
        data_summary={split: dict.fromkeys(CLASS_NAMES, 40) for split in ("train", "val", "test")},
        strategy="fine-tune",
        phases=[{"name": "head", "epochs": 2, "description": "train the new head " * 12}, {"name": "full"}],
        config={"data": {"root": LONG_PATH, "classes": CLASS_NAMES}, "train": {"lr": 1e-3}},
        plots=_plots(metrics, run_dir / "plots"),
        notes=[f"Images read from {LONG_PATH}"],
        wall_time_s=12.0,
        data_checks=_data_checks(run_dir),
    )
    return write_reports(context)[1]


def _render(page: Path, width: int, profile: Path) -> dict[str, Any]:
    assert CHROMIUM is not None
    measured = page.with_name(f"measured-{width}.html")
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
    command = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",  # a fresh profile: no lock shared with another Chromium
        "--virtual-time-budget=5000",
        f"--window-size={width},800",
        "--dump-dom",
        measured.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="layout-result">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    assert found, f"no layout result in Chromium's DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width", [1280, 800])
def test_report_fits_the_screen_and_shows_every_plot(report: Path, width: int, tmp_path: Path) -> None:
    result = _render(report, width, tmp_path / "profile")

    assert result["innerWidth"] == width
    assert result["images"] == [True] * 5
    assert result["scrollWidth"] <= result["innerWidth"]
    assert result["overflowing"] == []
    assert result["scrollingBoxes"] >= 1  # the wide table does overflow, but inside its own box
