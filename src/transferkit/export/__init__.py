"""Step 5b: ship the fine-tuned model: the bundle, `load` and its Classifier, export formats.

The names below load their module on first use, and the ONNX format registers itself when an export
first asks for it: `predict` with an exported model imports neither timm nor the exporters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferkit.lazy import lazy_names

if TYPE_CHECKING:
    from transferkit.export.bundle import BundleInfo, save_bundle
    from transferkit.export.formats import ExportReport, export_formats, export_model
    from transferkit.export.predictor import Classifier, FilePrediction, Prediction, list_image_files, load

_MODULES = {
    "BundleInfo": "bundle",
    "save_bundle": "bundle",
    "ExportReport": "formats",
    "export_formats": "formats",
    "export_model": "formats",
    "Classifier": "predictor",
    "FilePrediction": "predictor",
    "Prediction": "predictor",
    "list_image_files": "predictor",
    "load": "predictor",
}

__all__ = [
    "BundleInfo",
    "Classifier",
    "ExportReport",
    "FilePrediction",
    "Prediction",
    "export_formats",
    "export_model",
    "list_image_files",
    "load",
    "save_bundle",
]

__getattr__ = lazy_names(__name__, _MODULES)
