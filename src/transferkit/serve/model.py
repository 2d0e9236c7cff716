"""`ServedModel`: the bundle behind the server: its `Classifier`, identity, card, and image decoding.

Images are decoded, resized and cropped exactly as `Classifier.predict_proba` does for a file
(`decode_image`, then the bundle's `Preprocessing.resize`), and the batch goes through the
`Classifier`'s network and calibration (views, temperature), so the server answers what `load(bundle)`
predicts: the task's label, and every other label the bundle predicts (`predict_files`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.data.decode import decode_image
from transferkit.errors import DataError
from transferkit.export.predictor import Classifier, OtherLabel, load
from transferkit.models.saved import find_bundle


class _NamedBytes(io.BytesIO):
    """Bytes that PIL's error messages call by the uploaded file's name, not by a memory address."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.display_name = name

    def __repr__(self) -> str:
        return repr(self.display_name)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: `bundle_sha256` hashes config.json, which holds the weights' hash
    (`weights_sha256`), labels, preprocessing and temperature, so any change to them changes it."""

    bundle_sha256: str
    weights_sha256: str | None
    architecture: str
    data: str
    backend: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ServedModel:
    """A loaded bundle and what the server says about it."""

    def __init__(self, path: str | Path, backend: str = "auto") -> None:
        self.bundle = find_bundle(Path(path))
        # "auto": load() takes model.onnx when it was exported from these weights, else PyTorch (or its
        # translation in memory); a bundle with other labels runs its weights, since model.onnx is the
        # task's network alone
        self.classifier: Classifier = load(self.bundle, backend=backend)
        self.warm_up()
        self.backend = self.classifier.backend
        config_bytes = (self.bundle / "config.json").read_bytes()
        self.config: dict[str, Any] = json.loads(config_bytes)
        card = self.bundle / "README.md"
        self.model_card = card.read_text(errors="replace") if card.is_file() else ""
        self.identity = ModelIdentity(
            bundle_sha256=hashlib.sha256(config_bytes).hexdigest(),
            weights_sha256=self.config.get("model_sha256"),
            architecture=str(self.config.get("architecture", "")),
            data=str(self.config.get("data", "")),
            backend=self.backend,
        )

    def warm_up(self) -> None:
        """One batch before the first request: a checked backend (`load`'s "auto") chooses what runs now,
        whatever the size of the requests to come (a server runs long enough to pay for a translation),
        and the first request does not wait for onnxruntime to start."""
        preprocessing = self.classifier.preprocessing
        shape = (4, preprocessing.channels, preprocessing.image_size, preprocessing.image_size)
        self.classifier.pixel_model(np.random.default_rng(0).integers(0, 256, shape, np.uint8))

    @property
    def label_names(self) -> list[str]:
        return self.classifier.label_names

    def pixels(self, data: bytes, name: str) -> np.ndarray:
        """One uploaded file as uint8 (C, H, W), decoded, resized and cropped as in training.

        Raises:
            DataError: empty, truncated, not an image, or a decompression bomb; the message names `name`.
        """
        if not data:
            raise DataError(f"Cannot decode image {name}: the file is empty (0 bytes).")
        preprocessing = self.classifier.preprocessing
        channels, resized_to = self.classifier.data_channels, preprocessing.scaled_size
        image = decode_image(_NamedBytes(data, name), channels, name, resized_to=resized_to)
        return preprocessing.resize(image)

    @property
    def other_labels(self) -> tuple[OtherLabel, ...]:
        """The labels the bundle predicts beside the task's."""
        return self.classifier.other_labels

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of a batch of uint8 pixels (N, C, H, W), one row per image: the task's
        classes, then each other label's (`split` takes a row apart)."""
        classifier = self.classifier
        logits = classifier.network_logits(pixels)
        others = classifier.other_probabilities(logits).values()
        return np.concatenate([classifier.task_probabilities(logits), *others], axis=1)

    def split(self, row: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One row of `probabilities`: the task's probabilities and each other label's, by name."""
        columns = self.classifier.other_columns().items()
        return row[: len(self.label_names)], {name: row[where] for name, where in columns}

    def info(self) -> dict[str, Any]:
        """Labels, preprocessing, test metrics with their intervals, and the model card."""
        config = self.config
        other_metrics = {task["name"]: task.get("metrics", {}) for task in config.get("other_tasks") or []}
        return {
            "model": self.identity.to_dict(),
            "labels": self.label_names,
            "preprocessing": config.get("preprocessing", {}),
            "data_channels": self.classifier.data_channels,
            "test_time_views": config.get("test_time_views", ["identity"]),
            "temperature": self.classifier.temperature,
            "metrics": {
                name: {"value": value, "interval_95": (config.get("metric_intervals") or {}).get(name)}
                for name, value in (config.get("metrics") or {}).items()
            },
            "test_images": config.get("test_images", 0),
            "other_labels": [
                {
                    "name": other.name,
                    "labels": list(other.label_names),
                    "temperature": other.temperature,
                    "metrics": other_metrics.get(other.name, {}),
                }
                for other in self.other_labels
            ],
            "model_card": self.model_card,
        }


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 pixels (C, H, W) as a PNG data URL: the image as the model sees it."""
    channels = pixels.shape[0]
    array = pixels[0] if channels == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")  # L, RGB or RGBA from the array's shape
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
