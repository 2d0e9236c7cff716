"""Export formats, registered by name: ``transferkit export --format NAME`` and `export_model`.

A format is a function ``(bundle, target, quantize) -> ExportReport`` registered with
``@export_formats.register("name")``; ``safetensors`` (a copy of the bundle) is here, ``onnx`` in
`export.onnx`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.errors import ConfigError
from transferkit.files import write_atomic
from transferkit.models.saved import find_bundle
from transferkit.registry import Registry


@dataclass(frozen=True)
class CheckImages:
    """Images an export is checked on: uint8 pixels (N, C, H, W), true label indices if known, a note."""

    pixels: np.ndarray
    labels: np.ndarray | None
    description: str


@dataclass(frozen=True)
class Parity:
    """How far onnxruntime's probabilities are from PyTorch's on `num_images` images."""

    max_abs_difference: float
    num_images: int
    batch_sizes: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class QuantizationReport:
    """The int8 model against the float one on the same images.

    Attributes:
        agreement: share of images whose most probable label is the float model's.
        max_abs_difference: largest absolute probability difference to the float ONNX model.
        float_accuracy, int8_accuracy: accuracy on the run's test images; None without true labels.
    """

    path: Path
    agreement: float
    max_abs_difference: float
    float_accuracy: float | None
    int8_accuracy: float | None
    float_bytes: int
    int8_bytes: int


@dataclass(frozen=True)
class ExportReport:
    """What `export_model` wrote: the output bundle folder, its new files, and the checks."""

    out: Path
    files: list[Path]
    parity: Parity | None = None
    quantization: QuantizationReport | None = None


ExportFormat = Callable[[Path, Path, str | None], ExportReport]
export_formats: Registry[ExportFormat] = Registry("export format")
export_formats.declare("onnx", "transferkit.export.onnx")  # registers itself when first used


def export_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    format: str = "onnx",
    quantize: str | None = None,
) -> ExportReport:
    """`transferkit export`: writes the model of a run or bundle in a registered format.

    Args:
        source: a run directory or a bundle folder.
        out: the folder to write a complete bundle to; by default the new files go into the source's
            bundle. ``format="safetensors"`` needs it: it copies the bundle there.
        format: a registered format: ``onnx`` (checked against PyTorch) or ``safetensors``.
        quantize: "int8" also writes ``model.int8.onnx`` (onnxruntime dynamic quantization).
    """
    export = export_formats.get(format)
    bundle = find_bundle(Path(source))
    return export(bundle, Path(out) if out is not None else bundle, quantize)


@export_formats.register("safetensors")
def export_safetensors(bundle: Path, target: Path, quantize: str | None) -> ExportReport:
    """A copy of the bundle (weights as safetensors, config.json, model card) in another folder."""
    if quantize is not None:
        raise ConfigError("--quantize int8 quantizes the ONNX model: use it with --format onnx.")
    if same_folder(target, bundle):
        raise ConfigError(f"--format safetensors copies the bundle {bundle}: give --out DIR, another folder.")
    return ExportReport(target, copy_bundle(bundle, target))


def copy_bundle(bundle: Path, out: Path, skip: Sequence[str] = ()) -> list[Path]:
    """Copies the bundle's files to `out`, each written atomically; returns the files written."""
    names = sorted(p.name for p in bundle.iterdir() if p.is_file() and not p.name.startswith("."))
    return [write_atomic(out / name, (bundle / name).read_bytes()) for name in names if name not in skip]


def same_folder(first: Path, second: Path) -> bool:
    return first.resolve() == second.resolve()
