"""ONNX files run with onnxruntime: what `load(..., backend="onnx")` predicts with."""

from __future__ import annotations

from pathlib import Path

from transferkit.errors import ModelError
from transferkit.training.fast_inference import INPUT_NAME, OUTPUT_NAME, OnnxModule, optional_import

__all__ = [
    "INPUT_NAME",
    "INT8_FILE",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "WEIGHTS_KEY",
    "OnnxPixelModel",
    "optional_import",
]

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_KEY = "transferkit_weights_sha256"  # metadata: the bundle weights the export was checked against


class OnnxPixelModel(OnnxModule):
    """An exported classifier run with onnxruntime on the CPU: uint8 pixels (N, C, H, W) -> logits."""

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
