"""Datasets shipped offline in PyPI packages: ELPV solar cells and scikit-learn's digits."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.data.labels import LabelGrouping
from transferkit.data.resolve import data_sources
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.data.splits import sklearn_split
from transferkit.errors import MissingDependencyError

ELPV_PROBABILITIES = ("0", "1/3", "2/3", "1")
ELPV_CLASS_NAMES = [f"p={p}" for p in ELPV_PROBABILITIES]
ELPV_MODULE_TYPE = "module_type"  # mono- or polycrystalline: a label an auxiliary head can learn
ELPV_BINARY = LabelGrouping("binary", ("functional", "defective"), (0, 0, 1, 1))
# Deitsch et al. 2019: 25 % test, stratified by defect probability x module type, with a fixed seed so
# that every run and every tool is scored on the same 656 cells.
ELPV_TEST_FRACTION = 0.25
ELPV_SPLIT_SEED = 2019
ELPV_NOTE = (
    "Deitsch et al. (Solar Energy, 2019) report 88.42 % binary accuracy (functional vs defective, "
    "p > 0.5) with a fine-tuned VGG-19 at 300 px, and 82.44 % with an SVM on hand-crafted features."
)


@data_sources.register("elpv")
def load_elpv(spec: str) -> ImageSource:
    """ELPV: 2,624 electroluminescence images of solar cells, 4 classes of defect probability."""
    records = _elpv_records(binary=False)
    return ImageSource(
        spec,
        list(ELPV_CLASS_NAMES),
        records,
        channels=1,
        augment="d4",
        groupings=(ELPV_BINARY,),
        notes=[ELPV_NOTE],
        ordered=True,
    )


@data_sources.register("elpv:binary")
def load_elpv_binary(spec: str) -> ImageSource:
    """ELPV as functional (p <= 0.5) vs defective (p > 0.5), the task Deitsch et al. score."""
    records = _elpv_records(binary=True)
    return ImageSource(
        spec,
        list(ELPV_BINARY.group_names),
        records,
        channels=1,
        augment="d4",
        notes=[ELPV_NOTE],
        ordered=True,
    )


def _elpv_records(binary: bool) -> list[ImageRecord]:
    rows = _read_elpv_labels()
    classes = [round(probability * 3) for _, probability, _ in rows]  # 0, 1/3, 2/3, 1 -> 0..3
    module_types = [module for _, _, module in rows]
    strata = [f"{c}-{m}" for c, m in zip(classes, module_types, strict=True)]
    train, _ = sklearn_split(
        np.arange(len(rows)), test_size=ELPV_TEST_FRACTION, stratify=strata, random_state=ELPV_SPLIT_SEED
    )
    train_set = set(train.tolist())
    labels = [ELPV_BINARY.group_of_class[c] for c in classes] if binary else classes
    return [
        ImageRecord(
            path,
            label,
            "train" if i in train_set else "test",
            module,
            other_labels=((ELPV_MODULE_TYPE, module),),
        )
        for i, ((path, _, module), label) in enumerate(zip(rows, labels, strict=True))
    ]


def _read_elpv_labels() -> list[tuple[str, float, str]]:
    try:
        package = importlib.import_module("elpv_dataset")
    except ImportError as err:
        raise MissingDependencyError("elpv-dataset", "The packaged dataset elpv") from err
    root = Path(str(package.__file__)).parent / "data"
    with open(root / "labels.csv", newline="") as handle:
        rows = [line.split() for line in handle if line.strip()]
    return [(str(root / path), float(probability), module) for path, probability, module in rows]


@data_sources.register("digits")
def load_digits(spec: str) -> ImageSource:
    """scikit-learn's 1,797 handwritten digits, 8x8 grayscale, 10 classes; no flips (a 2 is not a 5)."""
    images, targets = digits_arrays()
    pixels = (images * (255.0 / 16.0)).round().astype(np.uint8)

    def open_digit(record: ImageRecord, channels: int) -> Image.Image:
        image = Image.fromarray(pixels[int(record.path.rsplit("/", 1)[1])], mode="L")
        return image if channels == 1 else image.convert("RGB")

    records = [ImageRecord(f"digits/{i:04d}", int(t)) for i, t in enumerate(targets)]
    return ImageSource(
        spec, [str(d) for d in range(10)], records, channels=1, augment="crop", loader=open_digit
    )


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits (1797, 8, 8) in 0-16 and their classes, read from the file scikit-learn ships: importing
    scikit-learn takes seconds, reading the file a few milliseconds."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(folders))) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():  # another layout: ask scikit-learn itself
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        return digits.images, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


__all__ = ["ELPV_BINARY", "ELPV_CLASS_NAMES"]
