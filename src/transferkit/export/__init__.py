"""Step 5b: ship the fine-tuned model: the bundle, `load` and its Classifier, ONNX export.

`onnx` (the export) is not imported here: it needs the optional onnx and onnxruntime packages.
"""

from transferkit.export.bundle import BundleInfo, save_bundle
from transferkit.export.predictor import Classifier, FilePrediction, Prediction, list_image_files, load

__all__ = [
    "BundleInfo",
    "Classifier",
    "FilePrediction",
    "Prediction",
    "list_image_files",
    "load",
    "save_bundle",
]
