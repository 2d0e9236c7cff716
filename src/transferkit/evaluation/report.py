"""Markdown and self-contained HTML reports of one training run.

The report is assembled once as a list of blocks (heading, paragraph, table, image, code) and then rendered
twice, so the Markdown and HTML versions cannot drift apart in content.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from transferkit.evaluation.metrics import noise_note
from transferkit.files import write_atomic
from transferkit.progress import duration

if TYPE_CHECKING:  # the report reads a DataReport; importing transferkit.data would pull in torch
    from transferkit.data.checks import DataReport

_IMAGE_MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
}

_HEADLINE_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
# Below one accuracy point of interval half-width a test set is precise enough not to warrant the note.

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
       color: #1f2328; background: #fff; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #eaeef2; padding-bottom: .2rem; }
/* Long paths and names without spaces wrap instead of widening the page. */
h1, h2, p, li, figcaption { overflow-wrap: anywhere; }
/* Wide tables scroll inside their own box; the page itself never scrolls sideways. */
.table-wrap { overflow-x: auto; max-width: 100%; margin: .75rem 0; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; white-space: nowrap; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; }
figcaption { font-size: .9rem; color: #59636e; }
img { display: block; max-width: 100%; height: auto; }
pre { background: #f6f8fa; padding: .75rem; overflow-x: auto; font-size: .85rem; }
"""


@dataclass
class ReportContext:
    """Everything a run report shows.

    Attributes:
        title: Report title, e.g. ``"elpv · efficientnet_lite0 · fine-tune"``.
        run_dir: Directory the reports are written into; plot links are made relative to it.
        metrics: Output of :func:`transferkit.evaluation.compute_metrics` on the test split.
        data_summary: Split name -> class name -> sample count.
        strategy: Name of the transfer-learning strategy.
        phases: One mapping per training phase, e.g. ``{"name": "head", "epochs": 1, "description": ...}``.
        config: Resolved configuration as a nested dict.
        plots: Caption -> PNG path, normally inside ``run_dir/plots``.
        notes: Extra lines shown under the headline metrics, e.g. published reference numbers.
        wall_time_s: Total run time in seconds, if known.
        timings_s: Seconds of each step of the run by its name (``data``, ``decoding``,
            ``cross_validation``, ``final_model``, ``test``, ...), shown beside the wall time.
        data_checks: What :func:`transferkit.data.checks.check_data` found, if the data was checked.
        cross_validation: :func:`transferkit.evaluation.cross_validation.summarize_folds`'s output, if the
            run cross-validated.
        weight_choice: the WiSE-FT candidates (``alphas``, ``accuracy``, ``log_loss``), the ``alpha`` kept
            and what it was ``chosen_on``, if the run chose among them.
        model_choice: the start models scored (``candidates`` with ``spec``, ``scores``, ``place``) and
            the one ``chosen``, if the run compared several.
    """

    title: str
    run_dir: Path
    metrics: dict[str, Any]
    data_summary: dict[str, dict[str, int]]
    strategy: str
    phases: list[dict[str, Any]]
    config: dict[str, Any]
    plots: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    wall_time_s: float | None = None
    timings_s: dict[str, float] | None = None
    data_checks: DataReport | None = None
    cross_validation: dict[str, Any] | None = None
    weight_choice: dict[str, Any] | None = None
    model_choice: dict[str, Any] | None = None


def write_reports(context: ReportContext) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` into ``context.run_dir``.

    Both files are written atomically, so a crash never leaves a half-written report behind. The HTML embeds
    every image as a base64 data URI and uses inline CSS only, so it can be mailed or archived on its own.

    Args:
        context: Content of the report.

    Returns:
        Paths of the Markdown and HTML reports.
    """
    run_dir = Path(context.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    blocks = _build_blocks(context, run_dir)
    markdown_path = write_atomic(run_dir / "report.md", _render_markdown(context.title, blocks).encode())
    html_path = write_atomic(run_dir / "report.html", _render_html(context.title, blocks).encode())
    return markdown_path, html_path


class _Block(Protocol):
    def markdown(self) -> str: ...

    def html(self) -> str: ...


@dataclass(frozen=True)
class _Heading:
    text: str

    def markdown(self) -> str:
        return f"## {self.text}"

    def html(self) -> str:
        return f"<h2>{html.escape(self.text)}</h2>"


@dataclass(frozen=True)
class _Paragraph:
    text: str

    def markdown(self) -> str:
        return self.text

    def html(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class _Bullets:
    items: Sequence[str]

    def markdown(self) -> str:
        return "\n".join(f"- {item}" for item in self.items)

    def html(self) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in self.items) + "</ul>"


@dataclass(frozen=True)
class _Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric_from: int = 1  # columns at or after this index are right-aligned numbers

    def markdown(self) -> str:
        align = ["---" if i < self.numeric_from else "--:" for i in range(len(self.header))]
        lines = [_markdown_row(self.header), _markdown_row(align)]
        return "\n".join(lines + [_markdown_row(row) for row in self.rows])

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join(f"<tr>{self._html_cells(row)}</tr>" for row in self.rows)
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f'<div class="table-wrap">{table}</div>'

    def _html_cells(self, row: Sequence[str]) -> str:
        return "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if i >= self.numeric_from
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )


@dataclass(frozen=True)
class _Image:
    caption: str
    path: Path
    link: str  # path relative to the run directory, as written in Markdown

    def markdown(self) -> str:
        if not self.path.is_file():
            return f"*{self.caption}: plot not found at `{self.link}`*"
        # Angle brackets keep a link containing spaces in one piece.
        target = f"<{self.link}>" if " " in self.link else self.link
        return f"![{self.caption}]({target})\n\n*{self.caption}*"

    def html(self) -> str:
        if not self.path.is_file():
            return f"<p><em>{html.escape(f'{self.caption}: plot not found at {self.link}')}</em></p>"
        mime = _IMAGE_MIME_TYPES.get(self.path.suffix.lower(), "application/octet-stream")
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        alt = html.escape(self.caption)
        return (
            f'<figure><img src="data:{mime};base64,{data}" alt="{alt}">'
            f"<figcaption>{alt}</figcaption></figure>"
        )


@dataclass(frozen=True)
class _Code:
    text: str
    language: str

    def markdown(self) -> str:
        return f"```{self.language}\n{self.text.rstrip()}\n```"

    def html(self) -> str:
        return f"<pre><code>{html.escape(self.text)}</code></pre>"


def _build_blocks(context: ReportContext, run_dir: Path) -> list[_Block]:
    return [
        *_headline_blocks(context),
        *_data_blocks(context.data_summary, cross_validated=context.cross_validation is not None),
        *_data_check_blocks(context.data_checks),
        *_strategy_blocks(context.strategy, context.phases),
        *_cross_validation_blocks(context.cross_validation),
        *_model_choice_blocks(context.model_choice),
        *_weight_choice_blocks(context.weight_choice, context.phases),
        *_plot_blocks(context.plots, run_dir),
        *_operating_point_blocks(context.metrics.get("operating_point")),
        *_per_class_blocks(context.metrics),
        *_grouping_blocks(context.metrics),
        _Heading("Configuration"),
        _Code(yaml.safe_dump(_plain(context.config), sort_keys=False, allow_unicode=True), "yaml"),
    ]


def _headline_blocks(context: ReportContext) -> list[_Block]:
    metrics = context.metrics
    intervals = metrics.get("intervals") or {}
    rows = [[label, _percent(metrics[key], intervals.get(key))] for key, label in _HEADLINE_LABELS.items()]
    if metrics.get("auroc") is not None:
        rows.append(["AUROC", _score(metrics["auroc"], intervals.get("auroc"))])
    rows += _ordinal_rows(metrics)
    for k, value in (metrics.get("top_k_accuracy") or {}).items():
        rows.append([f"top-{k} accuracy", _percent(value)])
    for name, grouped in metrics.get("groupings", {}).items():
        grouped_intervals = grouped.get("intervals") or {}
        rows.append([f"{name} accuracy", _percent(grouped["accuracy"], grouped_intervals.get("accuracy"))])
    rows.append(["test images (N)", str(int(metrics["num_samples"]))])
    if "log_loss" in metrics:
        rows.append(["log-loss", f"{float(metrics['log_loss']):.4f}"])
    if context.wall_time_s is not None:
        rows.append(["wall time", duration(context.wall_time_s) + _steps(context.timings_s)])
    header = ["metric", "value [95 % interval]" if intervals else "value"]
    blocks: list[_Block] = [_Heading("Headline metrics (test split)"), _Table(header, rows)]
    sentences = [noise_note(metrics), _calibration_sentence(metrics), _tta_sentence(metrics)]
    blocks += [_Paragraph(text) for text in sentences if text]
    if context.notes:
        blocks.append(_Bullets(context.notes))
    return blocks


def _ordinal_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """MAE and QWK of ordered classes (none for unordered ones)."""
    intervals = metrics.get("intervals") or {}
    labels = {"mae": "mean absolute error (class steps)", "qwk": "quadratic weighted kappa"}
    return [
        [label, _score(metrics[key], intervals.get(key))]
        for key, label in labels.items()
        if metrics.get(key) is not None
    ]


def _calibration_sentence(metrics: dict[str, Any]) -> str | None:
    scaling = metrics.get("temperature_scaling")
    if not scaling:
        return None
    before, after = float(scaling["ece_before"]), float(scaling["ece_after"])
    return (
        f"Calibration: temperature scaling with T = {float(scaling['temperature']):.2f}, fitted on "
        f"{scaling['fitted_on']}; expected calibration error (ECE) {before:.3f} before → {after:.3f} after."
    )


def _tta_sentence(metrics: dict[str, Any]) -> str | None:
    tta = metrics.get("tta")
    if not tta:
        return None
    return (
        f"Test-time augmentation ({', '.join(str(v) for v in tta['views'])}): accuracy "
        f"{_percent(tta['accuracy_without'])} without, {_percent(tta['accuracy_with'])} with "
        f"({float(tta['gain']) * 100:+.1f} points)."
    )


def _data_blocks(data_summary: dict[str, dict[str, int]], *, cross_validated: bool) -> list[_Block]:
    splits = list(data_summary)
    # Classes in first-seen order, so a class missing from one split still gets a row.
    classes = list(dict.fromkeys(name for counts in data_summary.values() for name in counts))
    rows = [[name, *(str(data_summary[s].get(name, 0)) for s in splits)] for name in classes]
    rows.append(["total", *(str(sum(data_summary[s].values())) for s in splits)])
    blocks: list[_Block] = [_Heading("Data"), _Table(["class", *splits], rows)]
    if cross_validated:
        blocks.append(
            _Paragraph(
                "Validation is folded into train: cross-validation over train made the choices a "
                "validation split would make, and the final model trained on every train image."
            )
        )
    return blocks


def _data_check_blocks(checks: DataReport | None) -> list[_Block]:
    if checks is None:
        return []
    blocks: list[_Block] = [_Heading("Data checks"), _Paragraph(_check_summary(checks))]
    findings = [f"Error: {e}" for e in checks.errors] + [f"Warning: {w}" for w in checks.warnings]
    blocks.append(_Bullets(findings) if findings else _Paragraph("No errors or warnings."))
    if checks.bad_images:
        rows = [[checks.display_path(b.path), b.split, b.reason] for b in checks.bad_images]
        blocks += [
            _Paragraph(f"Unreadable images, left out ({len(rows)}):"),
            _Table(["image", "split", "reason"], rows, numeric_from=3),
        ]
    if checks.duplicates:
        rows = [
            [
                g.kind,
                " + ".join(g.splits),
                "yes" if g.leakage else "",
                ", ".join(
                    f"{checks.display_path(p)} ({label})" for p, label in zip(g.paths, g.labels, strict=True)
                ),
            ]
            for g in checks.duplicates
        ]
        blocks += [
            _Paragraph(f"Duplicate groups ({len(rows)}); leakage: copies in test and in train or val:"),
            _Table(["kind", "splits", "leakage", "images (class)"], rows, numeric_from=4),
        ]
    return blocks


def _check_summary(checks: DataReport) -> str:
    text = f"{checks.num_readable} of {checks.num_images} images readable"
    if checks.widths is not None and checks.heights is not None:
        width, height = checks.widths, checks.heights
        text += (
            f"; width {width.min:g} to {width.max:g} px (median {width.median:g}), "
            f"height {height.min:g} to {height.max:g} px (median {height.median:g})"
        )
    if checks.modes:
        text += "; modes as stored: " + ", ".join(f"{mode} {count}" for mode, count in checks.modes.items())
    if checks.imbalance is not None:
        text += f"; largest / smallest train class: {checks.imbalance:.1f}x"
    return text + "."


def _strategy_blocks(strategy: str, phases: list[dict[str, Any]]) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Strategy"), _Paragraph(f"Strategy: {strategy}")]
    if phases:
        columns = list(dict.fromkeys(key for phase in phases for key in phase))
        rows = [[_cell(phase.get(key, "")) for key in columns] for phase in phases]
        blocks.append(_Table(columns, rows, numeric_from=len(columns)))
    return blocks


def _cross_validation_blocks(cv: dict[str, Any] | None) -> list[_Block]:
    if cv is None:
        return []
    names = list(cv["mean"])
    header = ["fold", "held-out images", *(_metric_label(name) for name in names)]
    rows = [
        [str(row["fold"] + 1), str(row["images"]), *(_percent(row[name]) for name in names)]
        for row in cv["folds"]
    ]
    rows.append(["mean ± sd", "", *(f"{100 * cv['mean'][n]:.1f} ± {100 * cv['sd'][n]:.1f} %" for n in names)])
    oof = cv["out_of_fold"]
    final = (
        f"the final model is the ensemble of the {len(cv['folds'])} fold models (their mean probability)"
        if cv.get("final") == "ensemble"
        else f"the final model trained on all {int(oof['num_samples'])} train images"
    )
    text = (
        f"Each of the {len(cv['folds'])} folds was predicted by a model trained on the other folds; "
        f"{final}, and its calibration temperature was fitted on these out-of-fold predictions, so no "
        "choice was made on the test split. Out-of-fold "
        f"accuracy: {_percent(oof['accuracy'], (oof.get('intervals') or {}).get('accuracy'))}."
    )
    return [_Heading("Cross-validation (train split)"), _Table(header, rows), _Paragraph(text)]


def _model_choice_blocks(choice: dict[str, Any] | None) -> list[_Block]:
    if choice is None:
        return []
    scores = choice["scores"]
    rows = [
        [
            str(row["place"]),
            row["spec"] + (" (start)" if row["spec"] == choice["chosen"] else ""),
            *(f"{row['scores'][name]:.4f}" if row["scores"][name] is not None else "n/a" for name in scores),
        ]
        for row in choice["candidates"]
    ]
    text = (
        f"model.name was {choice['given']!r}. Each candidate's frozen features of the train split were "
        "scored by LogME (You et al. 2021) and leave-one-out kNN accuracy; the place is the mean of the "
        "two ranks, kNN breaking ties. No test image was used."
    )
    evidence = choice.get("evidence")
    if evidence:
        verdict = "it starts" if evidence["clear"] else f"{evidence['reference']} starts"
        text += (
            f" {evidence['challenger']} placed first; its kNN accuracy against the reference "
            f"{evidence['reference']}, image by image: {100 * evidence['knn_gain']:+.1f} points, standard "
            f"error {100 * evidence['standard_error']:.1f}, so {verdict} (another model than the "
            "reference starts only when its gain exceeds one standard error)."
        )
    blocks: list[_Block] = [
        _Heading("Start model"),
        _Table(["place", "model", *scores], rows),
        _Paragraph(text),
    ]
    return blocks


def _weight_choice_blocks(choice: dict[str, Any] | None, phases: list[dict[str, Any]]) -> list[_Block]:
    if choice is None:
        return []
    head_only = choice["alpha"] == 0 and not any(phase["epochs"] for phase in phases)
    rows = [
        [f"{alpha:g}" + (" (kept)" if alpha == choice["alpha"] else ""), _percent(accuracy), f"{loss:.4f}"]
        for alpha, accuracy, loss in zip(
            choice["alphas"], choice["accuracy"], choice["log_loss"], strict=True
        )
    ]
    balanced = choice.get("balanced", False)  # runs written before it was recorded did not balance
    text = (
        "θ = (1 - α) θ_head + α θ_fine-tuned (WiSE-FT, Wortsman et al. 2022): α = 0 is the head fitted on "
        "frozen features, α = 1 the fine-tuned network. The run keeps the one with the lowest log-loss on "
        f"the {choice['chosen_on']}, which weighs every image's probability where accuracy moves by whole "
        "images."
        + (" Training balanced the classes, so every class weighs the same here." if balanced else "")
        + (
            " With α = 0 chosen, the final model is the head fitted on every train image: its fine-tuning, "
            "which that choice discards, was skipped."
            if head_only
            else ""
        )
    )
    header = ["α", "balanced accuracy" if balanced else "accuracy", "log-loss"]
    return [_Heading("Final weights: head, fine-tuned, or between"), _Table(header, rows), _Paragraph(text)]


def _metric_label(name: str) -> str:
    return _HEADLINE_LABELS.get(name, name.replace("_", " "))


def _plot_blocks(plots: dict[str, Path], run_dir: Path) -> list[_Block]:
    if not plots:
        return []
    images = [
        _Image(caption, Path(path), _relative_link(Path(path), run_dir)) for caption, path in plots.items()
    ]
    return [_Heading("Plots"), *images]


def _per_class_blocks(metrics: dict[str, Any]) -> list[_Block]:
    per_class = metrics.get("per_class", [])
    rows = [
        [
            str(c["class"]),
            _percent(c["precision"]),
            _percent(c["recall"]),
            _percent(c["f1"], c.get("f1_interval")),
            str(c["support"]),
        ]
        for c in per_class
    ]
    with_intervals = any(c.get("f1_interval") for c in per_class)
    header = ["class", "precision", "recall", "F1 [95 % interval]" if with_intervals else "F1", "support"]
    return [_Heading("Per-class metrics (test split)"), _Table(header, rows)]


def _operating_point_blocks(scores: dict[str, Any] | None) -> list[_Block]:
    """The class predicted by its threshold: where the threshold lies and what it does on test."""
    if scores is None:
        return []
    point, intervals = scores["point"], scores.get("intervals") or {}
    name = point["class_name"]
    precision = scores.get("precision")
    rows = [
        ["threshold on its probability", f"{point['threshold']:.4g}"],
        [f"recall on {point['chosen_on']}", _percent(point["held_out_recall"])],
        ["test recall", _percent(scores["recall"], intervals.get("recall"))],
        ["test precision", "—" if precision is None else _percent(precision, intervals.get("precision"))],
        ["test images predicted as it", _percent(scores["flagged"])],
        ["test accuracy with this rule", _percent(scores["accuracy"], intervals.get("accuracy"))],
    ]
    target = f"{point['recall_target']:.0%}"
    text = (
        f"Recall target {target} for {name}: the largest threshold on its calibrated probability that a new "
        f"{name} image reaches with {target} probability, set by the ranks of the {name} images in "
        f"{point['chosen_on']} (split conformal).{_too_few_note(point)} The bundle predicts {name} whenever "
        "its probability reaches the threshold, and otherwise the most probable other class; the other "
        "metrics of this report are those of the most probable class."
    )
    return [_Heading(f"Operating point: {name}"), _Table(["", "value"], rows), _Paragraph(text)]


def _too_few_note(point: dict[str, Any]) -> str:
    """What the threshold promises when the held-out images of the class were too few for the target."""
    expected, target = point.get("expected_recall"), point["recall_target"]
    if expected is None or expected >= target:
        return ""
    return (
        f" With only {point['held_out_positives']} of them there, too few for {target:.0%}, the threshold "
        f"finds every one, and a new {point['class_name']} image reaches it with about {expected:.0%} "
        "probability."
    )


def _grouping_blocks(metrics: dict[str, Any]) -> list[_Block]:
    blocks: list[_Block] = []
    for name, grouped in metrics.get("groupings", {}).items():
        names = [str(n) for n in grouped["group_names"]]
        rows = [
            [true, *(str(v) for v in counts)]
            for true, counts in zip(names, grouped["confusion_matrix"], strict=True)
        ]
        blocks += [
            _Heading(f"Grouped task: {name}"),
            _Paragraph(_grouping_summary(grouped)),
            _Table(["true \\ predicted", *names], rows),
        ]
    return blocks


def _grouping_summary(grouped: dict[str, Any]) -> str:
    intervals = grouped.get("intervals") or {}
    scores = [
        f"{label} {_percent(grouped[key], intervals.get(key))}" for key, label in _HEADLINE_LABELS.items()
    ]
    if grouped.get("auroc") is not None:
        scores.append(f"AUROC {_score(grouped['auroc'], intervals.get('auroc'))}")
    summary = ", ".join(scores)
    return (
        summary[:1].upper() + summary[1:] + ". Group probabilities are sums of member-class probabilities; "
        "rows are true, columns predicted."
    )


def _render_markdown(title: str, blocks: Sequence[_Block]) -> str:
    return "\n\n".join([f"# {title}", *(block.markdown() for block in blocks)]) + "\n"


def _render_html(title: str, blocks: Sequence[_Block]) -> str:
    body = "\n".join(block.html() for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _markdown_row(cells: Sequence[str]) -> str:
    # A literal "|" would split the cell; newlines would end the table.
    escaped = (cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
    return "| " + " | ".join(escaped) + " |"


def _relative_link(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(path.resolve(), run_dir.resolve())).as_posix()


def _percent(value: float, interval: Sequence[float] | None = None) -> str:
    """``78.8 %``, or with its 95 % interval ``78.8 % [75.6, 81.9]``."""
    text = f"{float(value) * 100:.1f} %"
    if interval is None:
        return text
    return f"{text} [{float(interval[0]) * 100:.1f}, {float(interval[1]) * 100:.1f}]"


def _score(value: float, interval: Sequence[float] | None = None) -> str:
    """A score on a 0..1 scale such as AUROC: ``0.912``, or ``0.912 [0.884, 0.938]``."""
    text = f"{float(value):.3f}"
    return text if interval is None else f"{text} [{float(interval[0]):.3f}, {float(interval[1]):.3f}]"


def _steps(timings_s: dict[str, float] | None) -> str:
    """The run's steps, longest first: " (final model 40 s, test 9.1 s)"; nothing without timings."""
    if not timings_s:
        return ""
    longest = sorted(timings_s.items(), key=lambda item: -item[1])
    return " (" + ", ".join(f"{name.replace('_', ' ')} {duration(s)}" for name, s in longest) + ")"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _plain(value: Any) -> Any:
    """Convert a config tree into types ``yaml.safe_dump`` accepts; Paths, tuples, numpy scalars are not."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
