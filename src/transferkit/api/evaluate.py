"""`transferkit evaluate`: a fine-tuned model scored on a labelled split, without any training code.

Given a run directory and no data, the run's own test split is rebuilt from its config.yaml, so the
numbers can be checked against the run's metrics.json. Given `--data`, any dataset whose class names
the model knows can be scored, e.g. a new batch of labelled images from the production line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.config import DataConfig, FitConfig
from transferkit.data.checks import BadImage
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.source import ImageSource
from transferkit.data.threads import map_in_threads
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.metrics import compute_metrics, operating_point_metrics
from transferkit.export.predictor import Classifier, load
from transferkit.progress import progress_task
from transferkit.transforms.views import identity

SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a model on one split, with what was scored and what could not be read."""

    model: str
    data: str
    split: str
    views: list[str]
    metrics: dict[str, Any]
    paths: list[str]
    probabilities: np.ndarray
    skipped: list[BadImage]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "test_time_views": self.views,
            "metrics": self.metrics,
            "skipped": [{"path": bad.path, "reason": bad.reason} for bad in self.skipped],
        }


def evaluate(
    model: str | Path,
    data: str | None = None,
    split: str = "test",
    tta: bool = True,
    batch_size: int = 32,
    *,
    backend: str = "auto",
) -> Evaluation:
    """Scores the model of a run directory or bundle on a labelled split.

    Args:
        model: a run directory or a bundle folder.
        data: a dataset spec (folder, manifest, packaged name, hf:...); None: the run's own dataset.
        split: train, val, test, or all (every labelled image).
        tta: average the bundle's test-time views (as the run did); False: the image alone.
        backend: what runs the network, as `load` takes it; "auto": onnxruntime on a CPU when it matches
            PyTorch on the first images.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
    classifier = load(model, backend=backend)
    if not tta:
        classifier.views = (identity,)
    data_config = _data_config(Path(model), data)
    source = load_source(data_config)
    labels = _model_labels(source, classifier)
    indices = _split_indices(source, data_config, split)
    probabilities, kept, skipped = _predict_records(classifier, source, indices, batch_size)
    same_classes = source.class_names == classifier.label_names
    metrics = compute_metrics(
        labels[kept],
        probabilities,
        classifier.label_names,
        _groupings(source, classifier),
        ordered=classifier.ordinal or (source.ordered and same_classes),
    )
    if classifier.operating_point is not None:
        metrics["operating_point"] = operating_point_metrics(
            labels[kept], probabilities, classifier.operating_point
        )
    return Evaluation(
        str(model),
        data_config.name,
        split,
        [view.__name__ for view in classifier.views],
        metrics,
        [source.records[i].path for i in kept],
        probabilities,
        skipped,
    )


def _data_config(model: Path, data: str | None) -> DataConfig:
    """The run's data section (so its splits are rebuilt exactly), with `data` as the dataset if given."""
    run_config = model / "config.yaml"
    saved = FitConfig.of_run(run_config).data if run_config.is_file() else None
    if data is None:
        if saved is None:
            raise ConfigError(
                f"{model} is a bundle without its run's config.yaml: name the data with --data."
            )
        return saved
    # Other data: only how to split it carries over, not the run's subset, budget or columns.
    defaults = saved or DataConfig()
    return DataConfig(
        name=data,
        val_fraction=defaults.val_fraction,
        test_fraction=defaults.test_fraction,
        split_seed=defaults.split_seed,
        channels=defaults.channels,
    )


def _model_labels(source: ImageSource, classifier: Classifier) -> np.ndarray:
    """Each record's label as an index into the model's classes, matched by name."""
    unknown = sorted(set(source.class_names) - set(classifier.label_names))
    if unknown:
        raise DataError(
            f"The data has classes {unknown} that the model does not know; it knows {classifier.label_names}."
        )
    position = {name: classifier.label_names.index(name) for name in source.class_names}
    return np.array([position[source.class_names[r.label]] if r.label >= 0 else -1 for r in source.records])


def _split_indices(source: ImageSource, config: DataConfig, split: str) -> list[int]:
    if split == "all":  # every labelled image, whatever label budget the run trained with
        return [index for index, record in enumerate(source.records) if record.label >= 0]
    return dict(split_with_budget(source, config).items())[split]


def _predict_records(
    classifier: Classifier, source: ImageSource, indices: list[int], batch_size: int
) -> tuple[np.ndarray, list[int], list[BadImage]]:
    """Probabilities of every readable record; unreadable ones are skipped and listed."""
    chunks, kept, skipped = [], [], []
    classifier.expect(len(indices))  # one job, however small its batches
    resized_to = classifier.preprocessing.scaled_size  # decoded as fit decoded them

    def opened(index: int) -> Image.Image | DataError:
        try:
            return source.open(source.records[index], resized_to)
        except DataError as err:
            return err

    # one stream of decoding threads: the next images decode while the network runs on a batch
    decoded = zip(indices, map_in_threads(opened, indices), strict=True)
    with progress_task(f"evaluate {len(indices)} images", len(indices)) as advance:
        for start in range(0, len(indices), batch_size):
            images = []
            for index, image in itertools.islice(decoded, batch_size):
                if isinstance(image, DataError):
                    skipped.append(BadImage(index, source.records[index].path, str(image)))
                else:
                    images.append(image)
                    kept.append(index)
            chunks.append(classifier.predict_proba(images, batch_size))
            advance(min(batch_size, len(indices) - start))
    if not kept:
        raise DataError(f"None of the {len(indices)} images of the split could be read.")
    return np.concatenate(chunks), kept, skipped


def _groupings(source: ImageSource, classifier: Classifier) -> tuple[Any, ...]:
    """The dataset's coarser tasks (ELPV binary), when the model's classes are the dataset's, in order."""
    return source.groupings if source.class_names == classifier.label_names else ()
