"""ONNX files run with onnxruntime: what `load(..., backend="onnx")` predicts with."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

from transferkit.errors import ModelError
from transferkit.training.onnx_session import INPUT_NAME, OUTPUT_NAME, OnnxSession, optional_import
from transferkit.transforms.preprocessing import Preprocessing

__all__ = [
    "INPUT_NAME",
    "INT8_FILE",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "WEIGHTS_KEY",
    "OnnxPixelModel",
    "onnx_metadata",
    "optional_import",
    "with_metadata",
]

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_KEY = "transferkit_weights_sha256"  # metadata: the bundle weights the export was checked against
METADATA_FORMAT = "1"


class OnnxPixelModel(OnnxSession):
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


def onnx_metadata(label_names: Sequence[str], prep: Preprocessing, temperature: float) -> dict[str, str]:
    """The ONNX metadata_props: what an application needs to feed the model and read its output."""
    return {
        "transferkit_format": METADATA_FORMAT,
        "label_names": json.dumps(list(label_names)),
        "preprocessing": json.dumps(prep.to_dict()),
        "temperature": repr(temperature),
        "input": f"{INPUT_NAME}: uint8 (N, {prep.channels}, {prep.image_size}, {prep.image_size}), "
        f"{'RGBA' if prep.channels == 4 else 'RGB'}; {prep.describe_resize()}. "
        "Mean/std normalization is inside the model.",
        "output": f"{OUTPUT_NAME}: float32 (N, {len(label_names)}) in the order of label_names; "
        "probabilities = softmax(logits / temperature).",
    }


def with_metadata(serialized: bytes, metadata: dict[str, str]) -> bytes | None:
    """A serialized ONNX model with `metadata` as its metadata_props; None without the onnx package."""
    if importlib.util.find_spec("onnx") is None:
        return None
    import onnx

    model = onnx.load_from_string(serialized)
    onnx.helper.set_model_props(model, metadata)
    return bytes(model.SerializeToString())
