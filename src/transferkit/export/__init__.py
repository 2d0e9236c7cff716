"""Step 5b: ship the fine-tuned model: the bundle, `load` and its Classifier, export formats.

The ONNX format registers here too; the onnx and onnxruntime packages it needs (optional) are imported
only when it runs.
"""

from transferkit.export import onnx as _onnx  # noqa: F401  (registers the onnx export format)
from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.export.formats import ExportReport, export_formats, export_model
from transferkit.export.predictor import Classifier, FilePrediction, Prediction, list_image_files, load

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
