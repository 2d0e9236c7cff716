import pickle
import sys
from dataclasses import replace
from pathlib import Path

import datasets  # the dev extra: a missing one fails, not skips
import numpy as np
import pytest
from PIL import Image

from transferkit.data import fingerprint, resolve_data
from transferkit.data.hf_datasets import is_saved_dataset
from transferkit.errors import DataError, MissingDependencyError


def _images(count: int, size: tuple[int, int] = (6, 5)) -> list[Image.Image]:
    return [Image.fromarray(np.full((size[1], size[0], 3), 30 * n, np.uint8)) for n in range(count)]


def _features(**extra: object) -> object:
    return datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]), **extra}
    )


def _split(labels: list[int], **extra: list[object]) -> object:
    columns = {"image": _images(len(labels)), "label": labels, **extra}
    features = {name: datasets.Value("string") for name in extra}
    return datasets.Dataset.from_dict(columns, features=_features(**features))


def _save(dataset: object, folder: Path) -> Path:
    dataset.save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict saved with save_to_disk: train (3 cats, 3 dogs) and test (1 of each)."""
    species = ["tabby", "siamese", "tabby", "pug", "corgi", "pug"]
    train = _split([0, 1, 0, 1, 0, 1], caption=[f"a {s}" for s in species], breed=species)
    test = _split([0, 1], caption=["a tabby", "a pug"], breed=["tabby", "pug"])
    return _save(datasets.DatasetDict(train=train, test=test), tmp_path_factory.mktemp("hf") / "pets")


@pytest.mark.parametrize("prefix", ["hf:", ""])
def test_a_saved_dataset_dict_loads_with_its_splits(saved: Path, prefix: str) -> None:
    source = resolve_data(f"{prefix}{saved}")
    assert source.class_names == ["cat", "dog"]
    assert [(r.label, r.split) for r in source.records] == [
        *[(n % 2, "train") for n in range(6)],
        (0, "test"),
        (1, "test"),
    ]
    image = source.open(source.records[3])
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (6, 5), (90, 90, 90))
    assert replace(source, channels=1).open(source.records[3]).mode == "L"


def test_records_refer_to_the_dataset_fingerprint(saved: Path) -> None:
    first, again = resolve_data(str(saved)), resolve_data(f"hf:{saved}")
    assert first.records[0].path.endswith("/train/0") and first.records[-1].path.endswith("/test/1")
    assert fingerprint(first) == fingerprint(again)


def test_a_changed_dataset_changes_the_fingerprint(saved: Path, tmp_path: Path) -> None:
    changed = _save(
        datasets.DatasetDict(train=_split([0, 1, 1, 0]), test=_split([0, 1])), tmp_path / "changed"
    )
    assert fingerprint(resolve_data(str(changed))) != fingerprint(resolve_data(str(saved)))


def test_the_loader_survives_pickling_for_dataloader_workers(saved: Path) -> None:
    source = resolve_data(str(saved))
    loader = pickle.loads(pickle.dumps(source.loader))
    assert loader(source.records[0], 3).size == (6, 5)


def test_a_dataset_without_splits_is_left_to_split(tmp_path: Path) -> None:
    source = resolve_data(str(_save(_split([0, 1, 0, 1]), tmp_path / "flat")))
    assert {r.split for r in source.records} == {""}
    assert source.open(source.records[1]).size == (6, 5)


def test_validation_becomes_val(tmp_path: Path) -> None:
    folder = _save(datasets.DatasetDict(train=_split([0, 1]), validation=_split([1, 0])), tmp_path / "d")
    assert [r.split for r in resolve_data(str(folder)).records] == ["train", "train", "val", "val"]


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (("train", "extra"), r"splits \['extra'\] that transferkit cannot place"),
        (("test",), r"needs a train split"),
        (("train", "val", "validation"), r"at most one of val and validation"),
    ],
)
def test_unplaceable_splits_are_named(tmp_path: Path, splits: tuple[str, ...], message: str) -> None:
    folder = _save(datasets.DatasetDict({name: _split([0, 1]) for name in splits}), tmp_path / "d")
    with pytest.raises(DataError, match=message):
        resolve_data(str(folder))


def test_missing_labels_join_the_unlabeled_pool(tmp_path: Path) -> None:
    folder = _save(datasets.DatasetDict(train=_split([0, 1, -1]), test=_split([-1, -1])), tmp_path / "d")
    source = resolve_data(str(folder))
    assert [(r.label, r.split) for r in source.records] == [
        (0, "train"),
        (1, "train"),
        *[(-1, "unlabeled")] * 3,
    ]
    assert "3 rows" in source.notes[0]


def test_a_plain_label_column_gives_sorted_class_names(saved: Path) -> None:
    source = resolve_data(str(saved), label_column="breed")
    assert source.class_names == ["corgi", "pug", "siamese", "tabby"]
    assert [source.class_names[r.label] for r in source.records][-2:] == ["tabby", "pug"]


def test_image_bytes_without_decoding_are_read(tmp_path: Path) -> None:
    dataset = _split([0, 1]).cast_column("image", datasets.Image(decode=False))
    source = resolve_data(str(_save(dataset, tmp_path / "raw")))
    assert source.open(source.records[1]).getpixel((0, 0)) == (30, 30, 30)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"label_column": "species"},
            r"no column 'species'; its columns: image \(Image\), label \(ClassLabel\)",
        ),
        ({"image_column": "caption"}, r"column 'caption' is Value.*not images.*cast_column"),
        ({"label_column": "image"}, r"column 'image' is Image.*not labels"),
    ],
)
def test_bad_column_choices_list_the_columns(saved: Path, columns: dict[str, str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        resolve_data(str(saved), **columns)


def test_two_image_columns_need_a_choice(tmp_path: Path) -> None:
    features = _features(thumbnail=datasets.Image())
    columns = {"image": _images(2), "thumbnail": _images(2, size=(3, 3)), "label": [0, 1]}
    folder = _save(datasets.Dataset.from_dict(columns, features=features), tmp_path / "d")
    with pytest.raises(DataError, match=r"2 Image columns, \['image', 'thumbnail'\].*data\.image_column"):
        resolve_data(str(folder))
    source = resolve_data(str(folder), image_column="thumbnail")
    assert source.open(source.records[0]).size == (3, 3)


def test_no_class_label_column_needs_a_choice(tmp_path: Path) -> None:
    columns = {"image": _images(2), "kind": ["cat", "dog"]}
    folder = _save(datasets.Dataset.from_dict(columns), tmp_path / "d")
    with pytest.raises(
        DataError, match=r"no ClassLabel column; its columns: image \(Image\), kind \(Value\)"
    ):
        resolve_data(str(folder))
    assert resolve_data(str(folder), label_column="kind").class_names == ["cat", "dog"]


def test_an_uncached_dataset_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    before = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    with pytest.raises(DataError, match=r"'some/name'.*cannot be reached.*save_to_disk\(FOLDER\)"):
        resolve_data("hf:some/name")
    assert before == (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)  # offline mode is restored


def test_without_the_datasets_package_the_install_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependencyError, match="pip install datasets"):
        resolve_data("hf:beans")


def test_saved_folders_are_recognised(saved: Path, tmp_path: Path) -> None:
    assert is_saved_dataset(saved) and is_saved_dataset(saved / "train")
    assert not is_saved_dataset(tmp_path) and not is_saved_dataset("some/name")
