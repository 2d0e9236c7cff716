"""An ONNX graph run with onnxruntime on the CPU, on numpy arrays: no torch, so that predicting with an
exported model starts in a fraction of a second."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import MissingDependencyError, ModelError

INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


class OnnxSession:
    """One array in, one array out, through onnxruntime's CPU provider.

    Args:
        source: a .onnx file, or a serialized model held in memory.
        spinning: whether onnxruntime's threads wait for the next operation busily (faster alone); False
            where PyTorch computes between its calls, on the same cores.
    """

    backend = "onnx"

    def __init__(self, source: Path | bytes, *, spinning: bool = True) -> None:
        ort = optional_import("onnxruntime", "ONNX inference")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the CPU provider warns about unused initializers
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            model = source if isinstance(source, bytes) else str(source)
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's errors (InvalidProtobuf, Fail ...) derive from Exception
            name = "an in-memory ONNX model" if isinstance(source, bytes) else source
            raise ModelError(f"onnxruntime cannot load {name}: {err}. Export it again.") from err
        self.path = source if isinstance(source, Path) else None
        self.serialized = source if isinstance(source, bytes) else None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        (outputs,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(inputs)})
        return np.asarray(outputs)


def optional_import(module: str, feature: str) -> Any:
    """`module`, or a MissingDependencyError saying which extra installs it for `feature`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(module.split(".", maxsplit=1)[0], feature) from err
