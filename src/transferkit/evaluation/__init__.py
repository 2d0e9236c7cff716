"""Evaluation of a trained classifier: metrics, plots and run reports.

The names below load their module on first use, so that `predict`, which needs only calibration and
decisions, does not import matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferkit.lazy import lazy_names

if TYPE_CHECKING:
    from transferkit.evaluation.metrics import LabelGrouping, compute_metrics, headline_metrics
    from transferkit.evaluation.plots import plot_confusion_matrix, plot_learning_curves
    from transferkit.evaluation.report import ReportContext, write_reports

_MODULES = {
    "LabelGrouping": "metrics",
    "compute_metrics": "metrics",
    "headline_metrics": "metrics",
    "plot_confusion_matrix": "plots",
    "plot_learning_curves": "plots",
    "ReportContext": "report",
    "write_reports": "report",
}

__all__ = [
    "LabelGrouping",
    "ReportContext",
    "compute_metrics",
    "headline_metrics",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "write_reports",
]

__getattr__ = lazy_names(__name__, _MODULES)
