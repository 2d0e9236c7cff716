"""ONNX models run with onnxruntime: what `load(..., backend="onnx")` predicts with."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from transferkit.errors import MissingDependencyError, ModelError

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
WEIGHTS_KEY = "transferkit_weights_sha256"  # metadata: the bundle weights the export was checked against


class OnnxPixelModel:
    """An ONNX classifier run with onnxruntime on the CPU: uint8 pixels (N, C, H, W) -> logits."""

    def __init__(self, path: Path) -> None:
        ort = optional_import("onnxruntime", "ONNX inference")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the CPU provider warns about unused initializers
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's errors (InvalidProtobuf, Fail ...) derive from Exception
            raise ModelError(f"onnxruntime cannot load {path}: {err}. Export it again.") from err
        self.path = path

    @classmethod
    def from_bundle(cls, bundle: Path, name: str = ONNX_FILE) -> OnnxPixelModel:
        path = bundle / name
        if not path.is_file():
            raise ModelError(
                f"No {name} in {bundle}. Create it with: transferkit export {bundle} --format onnx"
                + (" --quantize int8" if name == INT8_FILE else "")
            )
        return cls(path)

    @property
    def weights_sha256(self) -> str | None:
        """The bundle weights this graph was exported from and checked against (None: older exports)."""
        return self.session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels.cpu().numpy()})
        return torch.from_numpy(logits)


def optional_import(module: str, feature: str) -> Any:
    """`module`, or a MissingDependencyError saying which extra installs it for `feature`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(module.split(".", maxsplit=1)[0], feature) from err
