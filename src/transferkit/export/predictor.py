"""`load`: a fine-tuned model from its bundle, predicting on image files, PIL images and arrays.

The preprocessing is the run's, reused rather than restated: `decode_image`, the bundle's
`Preprocessing.resize` (timm's eval resize and crop), then `Normalize`. `fit` evaluates through the same
`Classifier` (`Classifier.from_backbone`), so its metrics are what `load` predicts. Nothing from the
training loop is imported (no Lightning) and weights are read from safetensors only (no pickle).
"""

from __future__ import annotations

import copy
import glob
import importlib.util
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from transferkit.catalog import BACKENDS
from transferkit.config import ModelConfig
from transferkit.data.decode import IMAGE_CHANNELS, decode_image, to_channels
from transferkit.data.folder import list_images
from transferkit.data.manifest import is_manifest, manifest_path_column, manifest_paths, read_manifest
from transferkit.data.threads import map_in_threads
from transferkit.errors import DataError, ModelError, UnknownNameError
from transferkit.evaluation.calibration import tempered_probabilities
from transferkit.evaluation.operating_point import OperatingPoint, decide
from transferkit.export.translations import CachedTranslation
from transferkit.models.saved import find_bundle, read_saved_config, saved_preprocessing
from transferkit.transforms.preprocessing import Preprocessing
from transferkit.transforms.views import TEST_VIEWS, ImageView, identity

if TYPE_CHECKING:
    import torch
    from torch import nn

    from transferkit.export.onnx_runtime import OnnxPixelModel
    from transferkit.export.pixel_models import ClassifierNetwork
    from transferkit.training.fast_inference import InferenceChoice

ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray
"""An image file's path, a PIL image, or a uint8 array (H x W or H x W x C)."""

PixelModel: TypeAlias = Callable[[np.ndarray], np.ndarray]
"""uint8 pixels (N, C, H, W), resized and cropped -> float32 logits (N, classes)."""

logger = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE = 32


@runtime_checkable
class CheckedPixels(Protocol):
    """A pixel model that chooses its backend on the first job large enough to pay for a translation
    (`export.pixel_models.CheckedPixelModel`); an ONNX file or a plain function is not one."""

    @property
    def summary(self) -> InferenceChoice: ...

    @property
    def translation(self) -> bytes | None: ...

    def expect(self, elements: int) -> None: ...

    def for_work(self, elements: int) -> PixelModel: ...

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Prediction:
    """The most probable labels of one image with their probabilities, most probable first."""

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]


@dataclass(frozen=True)
class FilePrediction:
    """One file's prediction, or why the file could not be read (then `prediction` is None); with the
    predictions of the other labels the model gives (`OtherLabel`), by name."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None
    other_labels: dict[str, Prediction] = field(default_factory=dict)


@dataclass(frozen=True)
class OtherLabel:
    """Another label of the images that the network predicts beside its task (`models.task_heads`): its
    logits follow the task's, and those of the other labels before it, in the network's output."""

    name: str
    label_names: tuple[str, ...]
    temperature: float = 1.0


class Classifier:
    """A fine-tuned image classifier: the bundle's network, preprocessing, label names and temperature.

    Attributes:
        label_names: class names in the order of the model's outputs.
        preprocessing: input size, mean, std, interpolation and crop of the fine-tuned model.
        temperature: calibration temperature; probabilities are softmax(logits / temperature).
        views: test-time views whose probabilities are averaged, as the run's test evaluation did.
        data_channels: channels images are decoded to, as in training (1 for grayscale sets).
        pixel_model: uint8 pixels (N, C, H, W) -> logits; PyTorch, onnxruntime, or onnxruntime once it
            matched PyTorch on the first batch (`CheckedPixelModel`).
        network: the PyTorch module (normalization + network), or None when only an ONNX file runs.
        operating_point: a class predicted whenever its probability reaches a threshold (chosen for a
            recall target), or None: the most probable class.
        ordinal: the classes are ordered and the network is a cumulative-link model (`models.ordinal`).
        other_labels: labels beside the task's that the network also predicts; `predict_files` gives
            them, the other methods the task's label alone.
    """

    def __init__(
        self,
        pixel_model: PixelModel,
        label_names: Sequence[str],
        preprocessing: Preprocessing,
        temperature: float = 1.0,
        *,
        views: Sequence[ImageView] = (identity,),
        data_channels: int | None = None,
        network: ClassifierNetwork | None = None,
        operating_point: OperatingPoint | None = None,
        ordinal: bool = False,
        other_labels: Sequence[OtherLabel] = (),
    ) -> None:
        self.pixel_model = pixel_model
        self.label_names = list(label_names)
        self.preprocessing = preprocessing
        self.temperature = temperature
        self.views = tuple(views)
        self.data_channels = data_channels or preprocessing.channels
        self.network = network
        self.operating_point = operating_point
        self.ordinal = ordinal
        self.other_labels = tuple(other_labels)

    @classmethod
    def from_network(
        cls,
        model: nn.Module,
        label_names: Sequence[str],
        preprocessing: Preprocessing,
        *,
        views: Sequence[ImageView] = (identity,),
        data_channels: int | None = None,
        device: torch.device | None = None,
        backend: str = "torch",
        other_labels: Sequence[OtherLabel] = (),
        on_translated: Callable[[bytes], None] | None = None,
    ) -> Classifier:
        """A classifier over a network in memory (uncalibrated): what `fit` evaluates, and `load` returns.

        `backend` "auto" runs it with onnxruntime on a CPU once that matches PyTorch on the first batch
        (`CheckedPixelModel`; `on_translated` then receives the serialized graph), "torch" with PyTorch
        alone.
        """
        from transferkit.export.pixel_models import CheckedPixelModel, ClassifierNetwork
        from transferkit.models.ordinal import is_ordinal

        network = ClassifierNetwork(model, preprocessing)
        return cls(
            CheckedPixelModel(network, device, backend, on_translated),
            label_names,
            preprocessing,
            views=views,
            data_channels=data_channels,
            network=network,
            ordinal=is_ordinal(model),
            other_labels=other_labels,
        )

    @property
    def backend(self) -> str:
        """What runs the network, "torch" or "onnx" ("auto" until a checked one has seen its first batch)."""
        return str(getattr(self.pixel_model, "backend", "torch"))

    @property
    def inference(self) -> InferenceChoice | None:
        """Which backend runs the network and why (so far); None for an ONNX file."""
        return self.pixel_model.summary if isinstance(self.pixel_model, CheckedPixels) else None

    @property
    def translation(self) -> bytes | None:
        """The ONNX graph (logits, no metadata) that ran this classifier's predictions once it matched
        PyTorch; None when PyTorch or an ONNX file runs."""
        return self.pixel_model.translation if isinstance(self.pixel_model, CheckedPixels) else None

    def with_temperature(self, temperature: float) -> Classifier:
        """The same network and preprocessing, calibrated with `temperature`."""
        return replace_attributes(self, temperature=temperature)

    def with_operating_point(self, point: OperatingPoint | None) -> Classifier:
        """The same classifier, predicting `point`'s class whenever its probability reaches the threshold."""
        return replace_attributes(self, operating_point=point)

    def predict(
        self, images: ImageInput | Sequence[ImageInput], top_k: int = 1, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[Prediction]:
        """The predicted label of each image, then the next most probable up to `top_k` labels; with an
        operating point, the prediction follows its threshold (`decide`)."""
        return [self.top(row, top_k) for row in self.predict_proba(images, batch_size)]

    def predict_proba(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """Calibrated class probabilities, float32 (N, classes).

        Args:
            images: one image or a sequence of them: paths, PIL images, uint8 arrays; a 4-D array is a
                batch of H x W x C images.
            batch_size: images decoded and run at a time.
        """
        items = as_image_list(images)
        self.expect(len(items))
        chunks = [
            self.probabilities(self.preprocess(items[start : start + batch_size]))
            for start in range(0, len(items), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.empty((0, len(self.label_names)), np.float32)

    def predict_files(
        self, paths: Iterable[str], top_k: int = 1, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[FilePrediction]:
        """Predictions for image files in their order; an unreadable file is reported with its error."""
        paths = list(paths)
        self.expect(len(paths))
        results: list[FilePrediction | None] = [None] * len(paths)
        batch: list[tuple[int, np.ndarray]] = []
        decoded = map_in_threads(self._pixels_or_error, paths)
        for index, (path, pixels) in enumerate(zip(paths, decoded, strict=True)):
            if isinstance(pixels, DataError):
                results[index] = FilePrediction(path, error=str(pixels))
            else:
                batch.append((index, pixels))
            if len(batch) == batch_size:
                self._predict_batch(paths, batch, top_k, results)
                batch = []
        self._predict_batch(paths, batch, top_k, results)
        return [result for result in results if result is not None]

    def expect(self, images: int) -> None:
        """Announces `images` to come in batches, so that a checked backend translates the network when
        the whole job pays for it (`CheckedPixels.expect`)."""
        if isinstance(self.pixel_model, CheckedPixels):
            size, channels = self.preprocessing.image_size, self.preprocessing.channels
            self.pixel_model.expect(images * len(self.views) * channels * size * size)

    def preprocess(self, images: Sequence[ImageInput]) -> np.ndarray:
        """uint8 pixels (N, C, H, W): decoded, resized and cropped as in training."""
        if not images:
            size = self.preprocessing.image_size
            return np.empty((0, self.data_channels, size, size), np.uint8)
        return np.stack([self.pixels(image) for image in images])

    def _pixels_or_error(self, path: str) -> np.ndarray | DataError:
        try:
            return self.pixels(path)
        except DataError as err:
            return err

    def pixels(self, image: ImageInput) -> np.ndarray:
        """One image as uint8 (C, H, W), resized and cropped as in training."""
        resized_to = self.preprocessing.scaled_size
        return self.preprocessing.resize(to_pil_image(image, self.data_channels, resized_to))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """softmax(logits / temperature) of uint8 pixels (N, C, H, W), averaged over the test-time views;
        float32 (N, classes)."""
        if len(pixels) == 0:
            return np.empty((0, len(self.label_names)), np.float32)
        return self.task_probabilities(self.view_logits(pixels))

    def task_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """The task's calibrated probabilities (N, classes) from `view_logits` or `network_logits`."""
        task = logits[..., : len(self.label_names)]
        return tempered_probabilities(task, self.temperature).astype(np.float32)

    def view_logits(
        self,
        pixels: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        views: Sequence[ImageView] | None = None,
    ) -> np.ndarray:
        """Logits of uint8 pixels (N, C, H, W) under each test-time view (or `views`): float32
        (views, N, classes), what calibration fits its temperature on. The views of a chunk of images
        run as one batch of about `batch_size`."""
        return self.network_logits(pixels, batch_size, views)[..., : len(self.label_names)]

    def network_logits(
        self,
        pixels: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        views: Sequence[ImageView] | None = None,
    ) -> np.ndarray:
        """`view_logits` with the other labels' logits after the task's (views, N, outputs)."""
        pixels = np.asarray(pixels)
        views = tuple(views or self.views)
        model = self.pixel_model
        if isinstance(model, CheckedPixels):  # a small job runs on PyTorch, without translating
            count, _, height, width = pixels.shape
            model = model.for_work(count * self.preprocessing.channels * height * width * len(views))
        outputs = len(self.label_names) + sum(len(other.label_names) for other in self.other_labels)
        batches = [np.empty((len(views), 0, outputs), np.float32)]
        for count, batch in self.view_batches(pixels, batch_size, views):
            logits = np.asarray(model(batch), np.float32)
            batches.append(logits.reshape(len(views), count, -1))
        return np.concatenate(batches, axis=1)

    def view_batches(
        self,
        pixels: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        views: Sequence[ImageView] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Chunks of uint8 pixels (N, C, H, W) under each test-time view (or `views`), views outermost:
        (n, pixels (views * n, C, H, W)) for chunks of n images, about `batch_size` view images each."""
        count, _, height, width = pixels.shape
        # a grayscale image enters an RGB network as three equal channels
        pixels = np.broadcast_to(pixels, (count, self.preprocessing.channels, height, width))
        views = tuple(views or self.views)
        step = max(1, batch_size // len(views))
        for start in range(0, count, step):
            chunk = pixels[start : start + step]
            yield len(chunk), np.concatenate([view(chunk) for view in views])

    def top(self, probabilities: np.ndarray, top_k: int = 1) -> Prediction:
        """The `top_k` labels of one row of probabilities: the predicted one (the most probable, or as the
        operating point decides), then the others from the most probable."""
        predicted = int(decide(probabilities[None], self.operating_point)[0])
        return ranked(probabilities, self.label_names, top_k, predicted)

    def other_columns(self) -> dict[str, slice]:
        """Where each other label's outputs lie in `network_logits`: after the task's, in order."""
        columns, start = {}, len(self.label_names)
        for other in self.other_labels:
            columns[other.name] = slice(start, start + len(other.label_names))
            start = columns[other.name].stop
        return columns

    def other_probabilities(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Each other label's calibrated probabilities (N, its classes) from `network_logits`."""
        columns, probabilities = self.other_columns(), {}
        for other in self.other_labels:
            tempered = tempered_probabilities(logits[..., columns[other.name]], other.temperature)
            probabilities[other.name] = tempered.astype(np.float32)
        return probabilities

    def _predict_batch(
        self,
        paths: list[str],
        batch: list[tuple[int, np.ndarray]],
        top_k: int,
        results: list[FilePrediction | None],
    ) -> None:
        if not batch:
            return
        logits = self.network_logits(np.stack([pixels for _, pixels in batch]))
        probabilities = self.task_probabilities(logits)
        others = self.other_probabilities(logits)
        for position, (index, _) in enumerate(batch):
            other_labels = {
                other.name: ranked(others[other.name][position], other.label_names, top_k)
                for other in self.other_labels
            }
            results[index] = FilePrediction(
                paths[index], self.top(probabilities[position], top_k), other_labels=other_labels
            )


def ranked(
    probabilities: np.ndarray, label_names: Sequence[str], top_k: int = 1, predicted: int | None = None
) -> Prediction:
    """The `top_k` labels of one row of probabilities: `predicted` (by default the most probable), then
    the others from the most probable."""
    order = [int(i) for i in np.argsort(-probabilities, kind="stable")]
    if predicted is not None:
        order = [predicted, *(i for i in order if i != predicted)]
    order = order[: max(1, top_k)]
    return Prediction(tuple(label_names[i] for i in order), tuple(float(probabilities[i]) for i in order))


def load(
    path: str | os.PathLike[str],
    backend: str = "torch",
    device: str | None = None,
    *,
    other_labels: bool = True,
) -> Classifier:
    """Loads a fine-tuned model from a run directory or its bundle folder (``RUN/model``).

    Args:
        path: a run directory or a bundle folder (config.json + model.safetensors).
        backend: "torch" runs the safetensors weights with PyTorch; "onnx" runs the bundle's
            ``model.onnx`` with onnxruntime (``transferkit export PATH --format onnx`` writes it);
            "auto", on a CPU with onnxruntime installed (about three times faster there): the bundle's
            model.onnx when it was exported, and checked, from its current weights, else the weights
            translated to ONNX in memory and kept when they match PyTorch on the first batch
            (`CheckedPixelModel`; the kept graph is cached for the next load of the same bundle,
            `CachedTranslation`); PyTorch otherwise.
        device: where the torch backend runs, e.g. "cpu"; by default the GPU when there is one.
        other_labels: whether the network also gives the other labels a bundle predicts (config.json's
            ``other_tasks``, in `FilePrediction.other_labels`); False: the task's network alone.

    Raises:
        ModelError: no bundle at `path`, or its config or weights cannot be read.
    """
    if backend not in BACKENDS:
        raise UnknownNameError("backend", backend, BACKENDS)
    bundle = find_bundle(Path(path))
    config = read_bundle_config(bundle)
    others = bundle_other_labels(config) if other_labels else []
    # model.onnx is the task's network alone: a bundle of several labels runs its weights
    onnx_model, translation = None, None
    if backend == "auto" and not others and _on_cpu(device):
        onnx_model = current_onnx_model(bundle, config)
        if onnx_model is None:
            translation = CachedTranslation.of_bundle(bundle)
            onnx_model = translation.load() if translation is not None else None
    if onnx_model is not None:
        logger.info("predicting with onnxruntime (%s)", onnx_model.path)
        backend = "onnx"
    if backend == "onnx":
        return _onnx_classifier(bundle, config, onnx_model, others)
    return _torch_classifier(bundle, config, backend, device, others=others, translation=translation)


def _torch_classifier(
    bundle: Path,
    config: dict[str, Any],
    backend: str,
    device: str | None,
    *,
    others: list[OtherLabel],
    translation: CachedTranslation | None,
) -> Classifier:
    """The bundle's weights on PyTorch, with its other labels' heads; `translation` keeps the ONNX graph
    the classifier translates its weights to, for the next load."""
    # a bad config fails before the weights load
    preprocessing = saved_preprocessing(config, bundle / "config.json")
    views, channels = bundle_views(config, bundle), bundle_channels(config, bundle)
    temperature, point = bundle_temperature(config, bundle), bundle_operating_point(config, bundle)
    import torch

    # timm and torch: only to run the weights
    from transferkit.models.runs import load_run, read_other_heads
    from transferkit.models.task_heads import install_task_heads

    backbone = load_run(str(bundle), ModelConfig(f"run:{bundle}"))
    model = backbone.model
    if others:
        install_task_heads(model, read_other_heads(bundle, config, backbone.num_features))
    classifier = Classifier.from_network(
        model,
        config["label_names"],
        preprocessing,
        views=views,
        data_channels=channels,
        device=torch.device(device) if device else None,
        backend=backend,
        other_labels=others,
        on_translated=translation.store if translation is not None else None,
    )
    return classifier.with_temperature(temperature).with_operating_point(point)


def _onnx_classifier(
    bundle: Path, config: dict[str, Any], onnx_model: OnnxPixelModel | None, others: list[OtherLabel]
) -> Classifier:
    """The bundle's ONNX graph (`onnx_model`, else its model.onnx) on onnxruntime: the task alone."""
    if others:
        logger.warning(
            "%s predicts the task's label alone; the torch or auto backend also predicts %s.",
            bundle / "model.onnx",
            ", ".join(other.name for other in others),
        )
    from transferkit.export.onnx_runtime import OnnxPixelModel  # onnxruntime is optional

    return Classifier(
        onnx_model or OnnxPixelModel.from_bundle(bundle),
        config["label_names"],
        saved_preprocessing(config, bundle / "config.json"),
        bundle_temperature(config, bundle),
        views=bundle_views(config, bundle),
        data_channels=bundle_channels(config, bundle),
        operating_point=bundle_operating_point(config, bundle),
        ordinal=config.get("task") == "ordinal",
    )


def current_onnx_model(bundle: Path, config: dict[str, Any]) -> OnnxPixelModel | None:
    """The bundle's model.onnx when it was exported from the weights the bundle holds now; None when
    there is none, onnxruntime is missing, or it is stale (a bundle re-saved after the export)."""
    from transferkit.export.onnx_runtime import ONNX_FILE, OnnxPixelModel

    if not (bundle / ONNX_FILE).is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    model = OnnxPixelModel(bundle / ONNX_FILE)
    if model.weights_sha256 is None or model.weights_sha256 != config.get("model_sha256"):
        logger.info("%s was not exported from these weights: export it again to predict with it", model.path)
        return None
    return model


def _on_cpu(device: str | None) -> bool:
    """Whether PyTorch would run on the CPU: on a GPU, PyTorch on the device beats onnxruntime's CPU
    provider. Where no GPU can be (Linux without NVIDIA or AMD device files, macOS), torch, seconds to
    import, is not asked."""
    if device:
        return device.split(":")[0] == "cpu"
    if "torch" not in sys.modules and not _gpu_possible():
        return True
    import torch

    return not torch.cuda.is_available()


def _gpu_possible() -> bool:
    if sys.platform == "darwin":  # no CUDA; PyTorch's MPS is not used for predicting
        return False
    if sys.platform.startswith("linux"):
        return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")
    return True


def replace_attributes(classifier: Classifier, **changes: Any) -> Classifier:
    """A copy of `classifier` with `changes`; the network and pixel model are shared, not copied."""
    copied = copy.copy(classifier)
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied


def read_bundle_config(bundle: Path) -> dict[str, Any]:
    """A bundle's config.json, checked for the keys prediction needs."""
    path = bundle / "config.json"
    config = read_saved_config(path)  # also checks that label_names fit num_classes when present
    if "label_names" not in config:
        raise ModelError(f"{path} lacks ['label_names']; it was not written by transferkit's export.")
    return config


def bundle_other_labels(config: dict[str, Any]) -> list[OtherLabel]:
    """The labels a bundle predicts beside its task's (config.json's ``other_tasks``, checked when read)."""
    return [
        OtherLabel(task["name"], tuple(task["label_names"]), float(task["temperature"]))
        for task in config.get("other_tasks") or []
    ]


def bundle_views(config: dict[str, Any], bundle: Path) -> list[ImageView]:
    """The test-time views the run averaged (just the image for bundles that do not list them)."""
    names = config.get("test_time_views", ["identity"])
    valid = isinstance(names, list) and bool(names) and all(isinstance(name, str) for name in names)
    unknown = [name for name in names if name not in TEST_VIEWS] if valid else names
    if unknown or not valid:
        raise ModelError(
            f"{bundle / 'config.json'}: unknown test-time views {unknown!r}; valid: a list of "
            f"{', '.join(TEST_VIEWS)}. Export the run again."
        )
    return [TEST_VIEWS[name] for name in names]


def bundle_channels(config: dict[str, Any], bundle: Path) -> int | None:
    """The channels images are decoded to, as in training (None for bundles that do not say)."""
    channels = config.get("data_channels")
    if channels is not None and (isinstance(channels, bool) or channels not in IMAGE_CHANNELS):
        raise ModelError(
            f"{bundle / 'config.json'}: data_channels must be 1, 3, 4 or null, not {channels!r}. "
            "Export the run again."
        )
    return channels


def bundle_temperature(config: dict[str, Any], bundle: Path) -> float:
    """The calibration temperature in config.json (1.0, no calibration, when absent)."""
    value = config.get("temperature", 1.0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ModelError(f"{bundle / 'config.json'}: temperature must be a positive number, not {value!r}.")
    return float(value)


def bundle_operating_point(config: dict[str, Any], bundle: Path) -> OperatingPoint | None:
    """The operating point in config.json (None when absent: the most probable class is predicted)."""
    values = config.get("operating_point")
    if values is None:
        return None
    try:
        return OperatingPoint.from_dict(values, config["label_names"])
    except (TypeError, ValueError, KeyError) as err:
        raise ModelError(
            f"{bundle / 'config.json'}: operating_point is not valid ({err}); export the run again."
        ) from err


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or many as a list; a 4-D array is a batch, a 2-D or 3-D array one image."""
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def to_pil_image(image: ImageInput, channels: int, resized_to: int | None = None) -> Image.Image:
    """A path, PIL image or uint8 array as a PIL image with `channels` channels, EXIF orientation applied;
    a file is decoded no larger than needed for `resized_to` (`decode_image`)."""
    if isinstance(image, str | os.PathLike):
        return decode_image(os.fspath(image), channels, resized_to=resized_to)
    if isinstance(image, Image.Image):
        return to_channels(ImageOps.exif_transpose(image), channels)
    if isinstance(image, np.ndarray):
        return to_channels(_array_image(image), channels)
    raise DataError(
        f"Cannot predict on a {type(image).__name__}: give image paths, PIL images or uint8 arrays "
        "(H x W or H x W x C)."
    )


def _array_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise DataError(
            f"Image arrays must be uint8 (0 to 255), not {array.dtype}; for floats in 0 to 1 use "
            "(array * 255).round().astype(np.uint8)."
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(array))
    raise DataError(f"Image arrays must be H x W or H x W x C with C = 1, 3 or 4, not {array.shape}.")


def list_image_files(specs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Image files named by `specs`: files, folders (recursively), glob patterns, .csv/.jsonl manifests.

    A spec that names nothing is kept as it is, so that predicting on it reports the error in its place.
    """
    return [path for spec in specs for path in _expand(str(spec))]


def _expand(spec: str) -> list[str]:
    path = Path(spec)
    if path.is_dir():
        return [str(found) for found in list_images(path)]
    if path.is_file() and is_manifest(path):
        manifest = read_manifest(path)
        return manifest_paths(manifest, manifest_path_column(manifest, None))
    if not path.exists() and any(character in spec for character in "*?["):
        matches = sorted(glob.glob(spec, recursive=True))
        return [found for match in matches for found in _expand(match)] or [spec]
    return [spec]
