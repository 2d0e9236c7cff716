"""Evaluation of a trained classifier: metrics, plots and run reports."""

from transferkit.evaluation.metrics import LabelGrouping, compute_metrics, headline_metrics
from transferkit.evaluation.plots import plot_confusion_matrix, plot_learning_curves
from transferkit.evaluation.report import ReportContext, write_reports

__all__ = [
    "LabelGrouping",
    "ReportContext",
    "compute_metrics",
    "headline_metrics",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "write_reports",
]
