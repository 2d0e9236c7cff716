"""Reports are written from a small made-up run with real plot files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from transferkit.data.checks import BadImage, DataReport, DuplicateGroup, Spread
from transferkit.evaluation import (
    LabelGrouping,
    ReportContext,
    compute_metrics,
    plot_confusion_matrix,
    plot_learning_curves,
    write_reports,
)
from transferkit.evaluation.plots import plot_per_class_f1, plot_reliability

CLASS_NAMES = ("<cat&dog>", "bird", "fish")


@pytest.fixture
def context(tmp_path: Path) -> ReportContext:
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.2, 0.7],
            [0.3, 0.3, 0.4],
            [0.9, 0.05, 0.05],
        ]
    )
    grouping = LabelGrouping("binary", ("furry", "not furry"), (0, 1, 1))
    metrics = compute_metrics(y_true, probs, CLASS_NAMES, [grouping])
    plots_dir = tmp_path / "plots"
    history = [
        {"epoch": 1, "phase": "head", "train_loss": 1.0},
        {"epoch": 2, "phase": "full", "train_loss": 0.7},
    ]
    plots = {
        "Confusion matrix": plot_confusion_matrix(
            metrics["confusion_matrix"], CLASS_NAMES, plots_dir / "cm.png"
        ),
        "Learning curves": plot_learning_curves(history, plots_dir / "curves.png"),
    }
    return ReportContext(
        title="toy · tiny_net · fine-tune",
        run_dir=tmp_path,
        metrics=metrics,
        data_summary={"train": {"<cat&dog>": 10, "bird": 5, "fish": 7}, "test": {"<cat&dog>": 3, "bird": 2}},
        strategy="fine-tune",
        phases=[
            {"name": "head", "epochs": 1, "description": "train the head"},
            {"name": "full", "epochs": 1},
        ],
        config={"model": {"name": "tiny_net", "input_size": (224, 224)}, "out": tmp_path, "lr": 1e-3},
        plots=plots,
        notes=["Reference: 88.42 % binary accuracy"],
        wall_time_s=75.0,
    )


def test_html_is_self_contained_and_escaped(context: ReportContext) -> None:
    _, html_path = write_reports(context)
    text = html_path.read_text(encoding="utf-8")

    assert html_path == context.run_dir / "report.html"
    assert 'src="plots/' not in text
    assert text.count('src="data:image/png;base64,') == 2
    assert "87.5 %" in text  # 7 of 8 correct
    assert "&lt;cat&amp;dog&gt;" in text
    assert "<cat&dog>" not in text
    assert "<script" not in text and "<link" not in text


def test_markdown_links_plots_and_has_tables(context: ReportContext) -> None:
    md_path, _ = write_reports(context)
    text = md_path.read_text(encoding="utf-8")

    assert md_path == context.run_dir / "report.md"
    assert "(plots/cm.png)" in text and "(plots/curves.png)" in text
    assert "| class | precision | recall | F1" in text
    assert "87.5 %" in text
    assert "binary accuracy" in text
    assert "input_size:" in text and "```yaml" in text
    assert text.index("Headline metrics") < text.index("Data") < text.index("Per-class metrics")
    assert "Validation is folded into train" not in text  # no cross-validation ran


def test_no_temporary_files_are_left_behind(context: ReportContext) -> None:
    write_reports(context)
    write_reports(context)  # overwriting an existing report must work too

    assert sorted(p.name for p in context.run_dir.iterdir() if p.is_file()) == ["report.html", "report.md"]


def _data_checks(root: Path) -> DataReport:
    bad = [
        BadImage(3, str(root / "train/cat/zero.png"), "zero bytes", "train"),
        BadImage(9, str(root / "train/bird/notes.jpg"), "not an image", "train"),
        BadImage(17, str(root / "test/fish/cut <1>.png"), "truncated", "test"),
    ]
    leak = DuplicateGroup(
        "exact",
        [1, 20],
        [str(root / "train/bird/a.png"), str(root / "test/bird/a.png")],
        ["train", "test"],
        ["bird"] * 2,
    )
    return DataReport(
        num_images=25,
        root=str(root),
        class_names=list(CLASS_NAMES),
        counts={"train": {"<cat&dog>": 10, "bird": 5, "fish": 7}, "test": {"<cat&dog>": 3, "bird": 2}},
        widths=Spread(32, 40, 64),
        heights=Spread(30, 40, 48),
        modes={"RGB": 20, "L": 2},
        bad_images=bad,
        duplicates=[leak],
        imbalance=2.0,
        classes_without_train=[],
        errors=[
            "3 image(s) cannot be read",
            "1 duplicate group(s) put copies of test images in train or val",
        ],
        warnings=["Classes with fewer than 5 train images: bird (4)"],
    )


def test_data_checks_section_lists_every_bad_file(context: ReportContext) -> None:
    context = dataclasses.replace(context, data_checks=_data_checks(context.run_dir))
    md_path, html_path = write_reports(context)
    markdown, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")

    assert markdown.index("## Data\n") < markdown.index("## Data checks") < markdown.index("## Strategy")
    for name, reason in [("train/cat/zero.png", "zero bytes"), ("train/bird/notes.jpg", "not an image")]:
        assert f"| {name} | train | {reason} |" in markdown
        assert f"<td>{name}</td><td>train</td><td>{reason}</td>" in page
    assert "test/fish/cut <1>.png" in markdown and "test/fish/cut &lt;1&gt;.png" in page
    assert "| exact | train + test | yes | train/bird/a.png (bird), test/bird/a.png (bird) |" in markdown
    assert "- Error: 3 image(s) cannot be read" in markdown and "<li>Error: 3 image(s)" in page
    assert "- Warning: Classes with fewer than 5 train images" in markdown
    assert "22 of 25 images readable; width 32 to 64 px (median 40)" in markdown
    assert "<h2>Data checks</h2>" in page


def test_no_data_checks_section_without_checks(context: ReportContext) -> None:
    md_path, html_path = write_reports(context)
    assert "Data checks" not in md_path.read_text(encoding="utf-8")
    assert "Data checks" not in html_path.read_text(encoding="utf-8")


def _schema_metrics() -> dict[str, Any]:
    """Test metrics with every key of the evaluation schema, numbers chosen for easy reading."""
    per_class = [
        {"class": "cat", "precision": 0.8, "recall": 0.75, "f1": 0.7742, "support": 160,
         "f1_interval": [0.7211, 0.8203]},
        {"class": "dog", "precision": 0.77, "recall": 0.82, "f1": 0.7942, "support": 152,
         "f1_interval": [0.7402, 0.8411]},
    ]  # fmt: skip
    bins = [
        {"lower": i / 10, "upper": (i + 1) / 10, "count": c, "confidence": i / 10 + 0.05, "accuracy": i / 10}
        for i, c in enumerate([0, 0, 0, 0, 0, 20, 30, 50, 80, 132])
    ]
    return {
        "num_samples": 312,
        "accuracy": 0.7885,
        "balanced_accuracy": 0.785,
        "macro_f1": 0.7842,
        "log_loss": 0.4567,
        "auroc": 0.8712,
        "intervals": {
            "accuracy": [0.7564, 0.8192],
            "balanced_accuracy": [0.752, 0.817],
            "macro_f1": [0.751, 0.815],
            "auroc": [0.8401, 0.9003],
        },
        "resolution": 0.0314,
        "per_class": per_class,
        "confusion_matrix": [[120, 40], [27, 125]],
        "calibration": {"ece": 0.021, "bins": bins},
        "temperature_scaling": {
            "temperature": 1.734,
            "ece_before": 0.081,
            "ece_after": 0.021,
            "fitted_on": "val (300 images)",
        },
        "tta": {"views": ["identity", "hflip"], "accuracy_without": 0.7724, "accuracy_with": 0.7885,
                "gain": 0.0161},
        "groupings": {
            "animal": {
                "accuracy": 0.9,
                "balanced_accuracy": 0.88,
                "macro_f1": 0.89,
                "auroc": 0.95,
                "intervals": {"accuracy": [0.86, 0.93], "auroc": [0.93, 0.97]},
                "group_names": ["pet", "wild"],
                "confusion_matrix": [[200, 12], [19, 81]],
            }
        },
    }  # fmt: skip


@pytest.fixture
def schema_context(context: ReportContext) -> ReportContext:
    metrics = _schema_metrics()
    plots_dir = context.run_dir / "plots"
    plots = {
        **context.plots,
        "Per-class F1": plot_per_class_f1(metrics, plots_dir / "f1.png"),
        "Reliability": plot_reliability(metrics["calibration"]["bins"], plots_dir / "rel.png", 0.081, 0.021),
    }
    return dataclasses.replace(
        context, metrics=metrics, plots=plots, data_checks=_data_checks(context.run_dir), notes=[]
    )


def test_sections_come_in_reading_order(schema_context: ReportContext) -> None:
    md_path, html_path = write_reports(schema_context)
    markdown, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")

    expected = [
        "Headline metrics (test split)",
        "Data",
        "Data checks",
        "Strategy",
        "Plots",
        "Per-class metrics (test split)",
        "Grouped task: animal",
        "Configuration",
    ]
    assert re.findall(r"^## (.*)$", markdown, flags=re.MULTILINE) == expected
    assert re.findall(r"<h2>(.*?)</h2>", page) == expected
    assert markdown.startswith("# toy · tiny_net · fine-tune\n")
    # The sentences that qualify the headline numbers sit right under them, before the data.
    positions = [
        markdown.index(s) for s in ("| accuracy |", "With 312", "Calibration:", "Test-time", "## Data")
    ]
    assert positions == sorted(positions)


def test_headline_metrics_carry_their_intervals(schema_context: ReportContext) -> None:
    md_path, html_path = write_reports(schema_context)
    markdown, page = md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")

    assert "| metric | value [95 % interval] |" in markdown
    assert "| accuracy | 78.8 % [75.6, 81.9] |" in markdown
    assert "| balanced accuracy | 78.5 % [75.2, 81.7] |" in markdown
    assert "| AUROC | 0.871 [0.840, 0.900] |" in markdown
    assert "| animal accuracy | 90.0 % [86.0, 93.0] |" in markdown
    assert '<td class="num">78.8 % [75.6, 81.9]</td>' in page
    assert "| cat | 80.0 % | 75.0 % | 77.4 % [72.1, 82.0] | 160 |" in markdown
    assert "Accuracy 90.0 % [86.0, 93.0], balanced accuracy 88.0 %, macro-F1 89.0 %, AUROC 0.950" in markdown


def test_noise_calibration_and_tta_sentences(schema_context: ReportContext) -> None:
    markdown = write_reports(schema_context)[0].read_text(encoding="utf-8")

    assert (
        "With 312 test images the 95 % interval of accuracy spans ±3.1 points: differences between runs "
        "smaller than that are within the noise." in markdown
    )
    assert (
        "T = 1.73, fitted on val (300 images); expected calibration error (ECE) 0.081 before → 0.021 after"
        in (markdown)
    )
    assert (
        "Test-time augmentation (identity, hflip): accuracy 77.2 % without, 78.8 % with (+1.6 points)."
        in (markdown)
    )


def test_no_noise_sentence_for_a_precise_test_set(schema_context: ReportContext) -> None:
    metrics = {**schema_context.metrics, "resolution": 0.008}
    markdown = write_reports(dataclasses.replace(schema_context, metrics=metrics))[0].read_text("utf-8")
    assert "within the noise" not in markdown


def test_every_table_scrolls_in_its_own_box(schema_context: ReportContext) -> None:
    page = write_reports(schema_context)[1].read_text(encoding="utf-8")

    assert page.count("<table>") == page.count('<div class="table-wrap"><table>') > 5
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", page)
    assert re.search(r"img \{[^}]*max-width: 100%", page)
    assert re.search(r"main \{[^}]*max-width: \d+px", page)
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


def test_metrics_without_the_new_keys_still_render(context: ReportContext) -> None:
    old = {
        key: value
        for key, value in _schema_metrics().items()
        if key not in {"intervals", "auroc", "resolution", "calibration", "temperature_scaling", "tta"}
    }
    old["per_class"] = [{k: v for k, v in c.items() if k != "f1_interval"} for c in old["per_class"]]
    old["groupings"] = {
        name: {k: v for k, v in g.items() if k not in {"intervals", "auroc"}}
        for name, g in old["groupings"].items()
    }
    markdown = write_reports(dataclasses.replace(context, metrics=old))[0].read_text(encoding="utf-8")

    assert "| metric | value |" in markdown and "| accuracy | 78.8 % |" in markdown
    assert "| class | precision | recall | F1 | support |" in markdown
    assert "| cat | 80.0 % | 75.0 % | 77.4 % | 160 |" in markdown
    assert "Accuracy 90.0 %, balanced accuracy 88.0 %, macro-F1 89.0 %. Group" in markdown
    for absent in ("% [", "interval", "AUROC", "within the noise", "Calibration:", "Test-time augmentation"):
        assert absent not in markdown, absent
