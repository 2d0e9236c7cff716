"""Reports are written from a small made-up run with real plot files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
    assert "87.50 %" in text  # 7 of 8 correct
    assert "&lt;cat&amp;dog&gt;" in text
    assert "<cat&dog>" not in text
    assert "<script" not in text and "<link" not in text


def test_markdown_links_plots_and_has_tables(context: ReportContext) -> None:
    md_path, _ = write_reports(context)
    text = md_path.read_text(encoding="utf-8")

    assert md_path == context.run_dir / "report.md"
    assert "(plots/cm.png)" in text and "(plots/curves.png)" in text
    assert "| class | precision | recall | F1 | support |" in text
    assert "87.50 %" in text
    assert "binary accuracy" in text
    assert "input_size:" in text and "```yaml" in text
    assert text.index("Headline metrics") < text.index("Data") < text.index("Per-class metrics")


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
