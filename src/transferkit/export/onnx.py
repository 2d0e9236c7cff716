"""ONNX export of a bundle, checked against PyTorch with onnxruntime; optional int8 dynamic quantization.

The exported graph is `ClassifierNetwork`: its input ``pixels`` is what `Classifier.preprocess` returns,
uint8 (N, C, H, W) after the resize and centre crop, and the mean/std normalization is inside the graph,
so an application only decodes, resizes and crops. Its output ``logits`` is (N, classes); calibrated
probabilities are softmax(logits / temperature). The batch axis is dynamic. The model's metadata_props
repeat what an application needs: label names, preprocessing, temperature, and the input and output
conventions in words.
"""

from __future__ import annotations

import copy
import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from transferkit.errors import DataError, ModelError, UnknownNameError
from transferkit.export.formats import (
    CheckImages,
    ExportReport,
    Parity,
    QuantizationReport,
    copy_bundle,
    export_formats,
    same_folder,
)
from transferkit.export.onnx_runtime import (
    INPUT_NAME,
    INT8_FILE,
    ONNX_FILE,
    OUTPUT_NAME,
    WEIGHTS_KEY,
    OnnxPixelModel,
    onnx_metadata,
    optional_import,
)
from transferkit.export.predictor import Classifier, load, read_bundle_config
from transferkit.files import write_atomic

QUANTIZATIONS = ("int8",)
PARITY_TOLERANCE = 1e-4
PARITY_BATCH_SIZES = (32, 1)  # batched as predict runs, and single images: the batch axis is dynamic
OPSET = 18
RANDOM_IMAGES = 8


class ParityError(ModelError):
    """The ONNX model's probabilities differ from PyTorch's by the tolerance or more."""


@export_formats.register("onnx")
def export_onnx_format(bundle: Path, target: Path, quantize: str | None) -> ExportReport:
    """Adds a verified ``model.onnx`` (and ``model.int8.onnx`` with `quantize`) to the bundle at `target`.

    Raises:
        ParityError: onnxruntime's probabilities differ from PyTorch's by `PARITY_TOLERANCE` or more;
            nothing is written to ``model.onnx`` then.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UnknownNameError("quantization", quantize, QUANTIZATIONS)
    copied = [] if same_folder(target, bundle) else copy_bundle(bundle, target, (ONNX_FILE, INT8_FILE))
    # the reference on the CPU (no TF32 convolutions against onnxruntime), the task's network alone
    classifier = load(bundle, device="cpu", other_labels=False)
    images = check_images(bundle, classifier)
    target.mkdir(parents=True, exist_ok=True)
    weights = read_bundle_config(bundle).get("model_sha256")
    parity = export_checked(classifier, target / ONNX_FILE, images, weights_sha256=weights)
    files = [*copied, target / ONNX_FILE]
    if quantize is None:
        return ExportReport(target, files, parity)
    quantization = quantize_int8(classifier, target / ONNX_FILE, target / INT8_FILE, images)
    return ExportReport(target, [*files, target / INT8_FILE], parity, quantization)


def export_checked(
    classifier: Classifier,
    path: Path,
    images: CheckImages,
    tolerance: float = PARITY_TOLERANCE,
    weights_sha256: str | None = None,
) -> Parity:
    """Exports to a temporary file, checks it against PyTorch, then moves it to `path`; the metadata
    names the bundle weights (`weights_sha256`) it was checked against."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".onnx")
    os.close(handle)
    try:
        export_onnx(classifier, Path(temporary), weights_sha256)
        parity = check_parity(classifier, Path(temporary), images, tolerance=tolerance)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return parity


def export_onnx(classifier: Classifier, path: Path, weights_sha256: str | None = None) -> Path:
    """Writes the classifier's network (normalization included) as ONNX with a dynamic batch axis."""
    onnx = optional_import("onnx", "ONNX export")
    optional_import("onnxscript", "ONNX export")  # torch.onnx's exporter translates with it
    if classifier.network is None:
        raise ModelError("Only a PyTorch classifier can be exported; load the bundle with backend='torch'.")
    network = copy.deepcopy(classifier.network).cpu().eval()
    example = torch.zeros((2, *classifier.preprocessing.input_size), dtype=torch.uint8)
    try:
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=OPSET,
            verbose=False,
        )
    except Exception as err:  # torch.export and the ONNX translation raise many unrelated types
        raise ModelError(f"torch.onnx.export failed for this network: {err}") from err
    proto = program.model_proto  # type: ignore[union-attr]
    metadata = onnx_metadata(classifier.label_names, classifier.preprocessing, classifier.temperature)
    if weights_sha256 is not None:  # lets `load(backend="auto")` tell a stale model.onnx from a current one
        metadata[WEIGHTS_KEY] = weights_sha256
    onnx.helper.set_model_props(proto, metadata)
    return write_atomic(path, proto.SerializeToString())


def check_parity(
    classifier: Classifier,
    path: Path,
    images: CheckImages,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
) -> Parity:
    """Runs the ONNX file with onnxruntime at each batch size and compares its probabilities to PyTorch's.

    Raises:
        ParityError: the largest absolute difference is `tolerance` or more.
    """
    onnx_classifier = _with_pixel_model(classifier, OnnxPixelModel(path))
    expected = batched_probabilities(classifier, images.pixels, max(batch_sizes))
    difference = max(
        _max_abs_difference(expected, batched_probabilities(onnx_classifier, images.pixels, size))
        for size in batch_sizes
    )
    parity = Parity(difference, len(images.pixels), tuple(batch_sizes), images.description)
    if not difference < tolerance:  # also catches NaN
        raise ParityError(
            f"The ONNX export differs from PyTorch by {difference:.3g} in probability (tolerance "
            f"{tolerance:g}) on {images.description}; {path.name} was not kept. Report this with the "
            "model's architecture; the safetensors bundle is unaffected."
        )
    return parity


def quantize_int8(
    classifier: Classifier, float_path: Path, path: Path, images: CheckImages
) -> QuantizationReport:
    """onnxruntime's dynamic 8-bit quantization of `float_path`, compared with it on `images`.

    Weights are stored as 8-bit integers (about a quarter of the float file); activations are quantized
    on the fly. On CPUs this shrinks the file but can be slower than float for convolutional networks.
    """
    quantization = optional_import("onnxruntime.quantization", "int8 quantization")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".quantize.") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "quantized.onnx"
        # Shape inference and graph fusion first, as onnxruntime recommends before quantizing.
        quantization.quant_pre_process(float_path, prepared)
        # uint8 weights: onnxruntime's CPU ConvInteger runs them 2.7x faster than int8 ones (Lite0).
        quantization.quantize_dynamic(prepared, quantized, weight_type=quantization.QuantType.QUInt8)
        os.replace(quantized, path)
    reference = batched_probabilities(
        _with_pixel_model(classifier, OnnxPixelModel(float_path)), images.pixels
    )
    int8 = batched_probabilities(_with_pixel_model(classifier, OnnxPixelModel(path)), images.pixels)
    return QuantizationReport(
        path,
        float(np.mean(reference.argmax(1) == int8.argmax(1))) if len(reference) else 1.0,
        _max_abs_difference(reference, int8),
        _accuracy(reference, images.labels),
        _accuracy(int8, images.labels),
        float_path.stat().st_size,
        path.stat().st_size,
    )


def check_images(bundle: Path, classifier: Classifier) -> CheckImages:
    """The run's test images (listed in its predictions.csv), or random pixels for a bare bundle."""
    predictions = bundle.parent / "predictions.csv"
    if bundle.name == "model" and predictions.is_file():
        images = _test_images(predictions, classifier)
        if images is not None:
            return images
    shape = (RANDOM_IMAGES, *classifier.preprocessing.input_size)
    pixels = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    return CheckImages(pixels, None, f"{RANDOM_IMAGES} random images (a bare bundle has no test images)")


def batched_probabilities(classifier: Classifier, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
    chunks = [classifier.probabilities(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(chunks) if chunks else np.empty((0, len(classifier.label_names)), np.float32)


def _test_images(predictions: Path, classifier: Classifier) -> CheckImages | None:
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    index = {name: i for i, name in enumerate(classifier.label_names)}
    pixels, labels = [], []
    for row in rows:
        try:
            pixels.append(classifier.pixels(row.get("path", "")))
        except DataError:  # a test image moved, deleted or replaced since the run: left out
            continue
        labels.append(index.get(row.get("true", ""), -1))
    if not pixels:
        return None
    known = np.array(labels) if min(labels) >= 0 else None
    note = f"{len(pixels)} test images of {predictions.parent} (from predictions.csv)"
    return CheckImages(np.stack(pixels), known, note)


def _with_pixel_model(classifier: Classifier, pixel_model: OnnxPixelModel) -> Classifier:
    return Classifier(
        pixel_model,
        classifier.label_names,
        classifier.preprocessing,
        classifier.temperature,
        views=classifier.views,
        data_channels=classifier.data_channels,
    )


def _max_abs_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first - second).max()) if first.size else 0.0


def _accuracy(probabilities: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None or not len(labels) else float(np.mean(probabilities.argmax(1) == labels))
