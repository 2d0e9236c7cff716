"""Folders as users bring them: Kaggle-style split folders, loose images, Hugging Face imagefolders."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import resolve_data
from transferkit.errors import DataError
from transferkit.testing import make_image_folder


def _splits(source) -> Counter:
    return Counter(record.split for record in source.records)


@pytest.mark.parametrize(
    ("train", "val", "test"), [("train", "valid", "test"), ("Training", "Validation", "Test")]
)
def test_split_folders_go_by_their_common_names(tmp_path: Path, train: str, val: str, test: str) -> None:
    for name, count in ((train, 5), (val, 3), (test, 2)):
        make_image_folder(tmp_path / name, classes=("ants", "bees"), per_class=count)
    source = resolve_data(str(tmp_path))
    assert _splits(source) == {"train": 10, "val": 6, "test": 4}
    assert source.records[0].split == "train"  # records keep the order train, val, test


def test_two_folders_for_one_split_stop_with_both_named(tmp_path: Path) -> None:
    for name in ("train", "val", "valid"):
        make_image_folder(tmp_path / name, classes=("a", "b"), per_class=2)
    with pytest.raises(DataError, match=r"2 val folders, \['val', 'valid'\]; keep one"):
        resolve_data(str(tmp_path))


def test_a_folder_beside_the_split_folders_is_named_as_left_out(tmp_path: Path) -> None:
    for name in ("train", "test", "extra"):
        make_image_folder(tmp_path / name, classes=("a", "b"), per_class=2)
    source = resolve_data(str(tmp_path))
    assert len(source.records) == 8
    assert any("Left out: extra/ (4 images)" in note for note in source.notes)


def test_loose_images_without_class_folders_say_how_to_label_them(tmp_path: Path) -> None:
    for name in ("Abyssinian_1.jpg", "beagle_1.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(DataError, match=r"holds 2 images but no class subfolders.*manifest"):
        resolve_data(str(tmp_path))


def test_an_unlabeled_test_folder_is_left_out_and_test_drawn_from_train(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "train", classes=("cat", "dog"), per_class=8)
    _images(tmp_path / "test", [f"{n}.jpg" for n in range(5)])  # a competition's test set: no labels
    source = resolve_data(str(tmp_path))
    assert _splits(source) == {"train": 16}
    assert any("test holds 5 images without class folders" in note for note in source.notes)


@pytest.mark.parametrize("classes", [("bus", "car", "train"), ("control", "test")])
def test_a_class_named_like_a_split_is_a_class(tmp_path: Path, classes: tuple[str, ...]) -> None:
    source = resolve_data(str(make_image_folder(tmp_path, classes=classes, per_class=3)))
    assert source.class_names == list(classes)
    assert _splits(source) == {"": 3 * len(classes)}


def _images(folder: Path, names: list[str]) -> None:
    rng = np.random.default_rng(len(names))
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / name)


def test_a_hugging_face_imagefolder_reads_its_metadata(tmp_path: Path) -> None:
    names = [f"{kind}_{k}.png" for kind in ("cat", "dog") for k in range(4)]
    _images(tmp_path, names)
    rows = [f'{{"file_name": "{name}", "label": "{name.split("_")[0]}"}}' for name in names]
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    source = resolve_data(str(tmp_path))
    assert source.class_names == ["cat", "dog"]
    assert [Path(r.path).name for r in source.records if r.label == 1] == names[4:]
    assert source.name == str(tmp_path)


def test_each_split_folders_metadata_gives_its_split(tmp_path: Path) -> None:
    for split, count in (("train", 4), ("test", 2)):
        names = [f"{kind}_{k}.png" for kind in ("cat", "dog") for k in range(count)]
        _images(tmp_path / split, names)
        rows = ["file_name,species", *(f"{name},{name.split('_')[0]}" for name in names)]
        (tmp_path / split / "metadata.csv").write_text("\n".join(rows) + "\n")
    source = resolve_data(str(tmp_path))
    assert _splits(source) == {"train": 8, "test": 4}
    assert Counter(source.class_names[r.label] for r in source.records if r.split == "test") == {
        "cat": 2,
        "dog": 2,
    }


def test_metadata_in_some_split_folders_only_is_named(tmp_path: Path) -> None:
    _images(tmp_path / "train", ["a.png", "b.png"])
    (tmp_path / "train" / "metadata.csv").write_text("file_name,label\na.png,x\nb.png,y\n")
    make_image_folder(tmp_path / "test", classes=("x", "y"), per_class=1)
    with pytest.raises(DataError, match=r"metadata files in \['train/'\] but not in \['test/'\]"):
        resolve_data(str(tmp_path))


def test_a_manifests_split_column_takes_the_same_names(tmp_path: Path) -> None:
    names = [f"{kind}_{k}.png" for kind in ("cat", "dog") for k in range(3)]
    _images(tmp_path, names)
    splits = ["train", "Validation", "test"] * 2
    rows = ["path,label,split", *(f"{n},{n[:3]},{s}" for n, s in zip(names, splits, strict=True))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert _splits(resolve_data(str(tmp_path / "labels.csv"))) == {"train": 2, "val": 2, "test": 2}


def test_a_metadata_file_beside_class_folders_that_lists_no_labels_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_image_folder(tmp_path, classes=("ants", "bees"), per_class=3)
    (tmp_path / "metadata.csv").write_text("camera,iso\nX100,200\n")  # a camera's, not a manifest
    source = resolve_data(str(tmp_path))
    assert source.class_names == ["ants", "bees"] and len(source.records) == 6
    assert "does not list the images with labels" in caplog.text


def test_images_beside_the_class_folders_are_named_as_left_out(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("ants", "bees"), per_class=3)
    _images(tmp_path, ["unsorted_1.jpg", "unsorted_2.jpg"])
    source = resolve_data(str(tmp_path))
    assert len(source.records) == 6
    assert any("Left out: 2 images directly in" in note for note in source.notes)
