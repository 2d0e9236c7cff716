"""A ranking written out: JSON for scripts, CSV for spreadsheets, and a plot of score against speed."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from transferkit.evaluation.plots import save_figure
from transferkit.files import write_atomic, write_json
from transferkit.ranking.ranking import Ranking

_PRETRAINED = {"color": "#4c72b0", "marker": "o"}
_RANDOM_INIT = {"color": "#8c8c8c", "marker": "x"}  # negative controls stand apart at a glance
_COLUMNS = 3  # panels per row


def write_ranking(ranking: Ranking, out: Path) -> list[Path]:
    """Writes ranking.json, ranking.csv and ranking.png into `out`; returns their paths."""
    return [
        write_json(out / "ranking.json", ranking.to_dict()),
        write_atomic(out / "ranking.csv", ranking_csv(ranking).encode()),
        plot_score_against_speed(ranking, out / "ranking.png"),
    ]


def ranking_csv(ranking: Ranking) -> str:
    """One row per candidate, best first: size, speed, every score and its rank."""
    columns = ["rank", "model", "pretrained", "parameters", "images_per_second", *ranking.methods]
    if ranking.num_val_images:
        columns.append("race_accuracy")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for place, result in enumerate(ranking.candidates, start=1):
        scores = [result.scores[name] for name in ranking.methods]
        race = [result.race_accuracy] if ranking.num_val_images else []
        row = [place, result.label, result.pretrained, result.parameters, result.images_per_second]
        writer.writerow([*row, *scores, *race])
    return buffer.getvalue()


def plot_score_against_speed(ranking: Ranking, path: Path) -> Path:
    """One panel per score (and the race): score against images per second, each model labelled.

    Upper right is the model to pick: transfers well and runs fast.
    """
    panels = [*ranking.methods, *(["race_accuracy"] if ranking.num_val_images else [])]
    columns = min(len(panels), _COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(5.2 * columns, 4.2 * rows), layout="constrained")
    grid = list(figure.subplots(rows, columns, squeeze=False).flat)
    for axes, method in zip(grid, panels, strict=False):
        _draw_panel(axes, ranking, method)
    for axes in grid[len(panels) :]:
        axes.axis("off")
    handles = [
        Line2D([], [], linestyle="", **_PRETRAINED, label="pretrained"),  # type: ignore[arg-type]
        Line2D([], [], linestyle="", **_RANDOM_INIT, label="random init (control)"),  # type: ignore[arg-type]
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(f"Transferability to {ranking.data} against speed ({ranking.num_images} training images)")
    return save_figure(figure, path)


def _draw_panel(axes: Axes, ranking: Ranking, method: str) -> None:
    for result in ranking.candidates:
        value = result.race_accuracy if method == "race_accuracy" else result.scores.get(method)
        if value is None:
            continue
        style = _PRETRAINED if result.pretrained else _RANDOM_INIT
        axes.scatter([result.images_per_second], [value], s=36, **style)  # type: ignore[arg-type]
        note = axes.annotate(
            short_label(result.label),
            (result.images_per_second, value),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
        note.set_in_layout(False)  # a long name near the edge must not squeeze the axes to nothing
    axes.set_xscale("log")
    axes.margins(x=0.3, y=0.1)  # room for the names beside the points
    # Plain numbers at 1, 2 and 5 per decade: speeds rarely span more than two decades.
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("images / s on this machine (log scale)")
    axes.set_ylabel("validation accuracy (linear probe)" if method == "race_accuracy" else method)
    axes.set_title(method.replace("_", " "))
    axes.grid(alpha=0.3)


def short_label(label: str) -> str:
    """``run:runs/2024...-elpv-lite0`` -> ``run:2024...-elpv-lite0``: the folder's name tells runs apart."""
    prefix, sep, rest = label.partition(":")
    if sep and ("/" in rest or "\\" in rest):
        return f"{prefix}:{Path(rest.rstrip('/')).name}"
    return label


def create_ranking_dir(out: str | Path, data: str) -> Path:
    """A new folder ``OUT/<timestamp>-<data>`` for one ranking, so earlier rankings are kept."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(data).name or data).strip("_") or "data"
    root, suffix = Path(out) / f"{stamp}-{slug}", 1
    Path(out).mkdir(parents=True, exist_ok=True)
    while True:
        try:
            root.mkdir()  # claims the name atomically, even against a second process
            return root
        except FileExistsError:
            suffix += 1
            root = Path(out) / f"{stamp}-{slug}-{suffix}"
