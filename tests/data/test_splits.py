from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import class_counts, load_image_folder, make_splits, resolve_data, subsample
from transferkit.data.other_labels import auxiliary_labels
from transferkit.data.packaged import digits_arrays
from transferkit.errors import DataError, UnknownNameError
from transferkit.testing import make_image_folder


@pytest.fixture(scope="module")
def elpv():
    return resolve_data("elpv")


def test_elpv_follows_the_deitsch_protocol(elpv) -> None:
    splits = make_splits(elpv, val_fraction=0.1, test_fraction=0.5, seed=0)  # test_fraction is ignored
    assert len(elpv.records) == 2624
    assert len(splits.test) == 656
    assert len(splits.train) + len(splits.val) == 1968
    assert elpv.class_names == ["p=0", "p=1/3", "p=2/3", "p=1"]


def test_elpv_test_split_is_stratified_by_class_and_module_type(elpv) -> None:
    splits = make_splits(elpv, 0.1, 0.25, seed=0)
    everything = Counter((r.label, r.stratum) for r in elpv.records)
    test = Counter((elpv.records[i].label, elpv.records[i].stratum) for i in splits.test)
    for stratum, count in everything.items():
        assert abs(test[stratum] - count / 4) <= 1


def test_elpv_module_type_is_a_label_an_auxiliary_head_can_learn(elpv) -> None:
    module_type = auxiliary_labels(elpv, "module_type")
    assert module_type.class_names == ["mono", "poly"]
    assert module_type.targets.tolist() == [module_type.class_names.index(r.stratum) for r in elpv.records]


def test_elpv_test_split_is_the_same_for_every_seed(elpv) -> None:
    first, second = make_splits(elpv, 0.1, 0.25, seed=0), make_splits(elpv, 0.1, 0.25, seed=1)
    assert first.test == second.test
    assert first.val != second.val


def test_splits_are_disjoint_and_complete(elpv) -> None:
    splits = make_splits(elpv, 0.1, 0.25, seed=3)
    indices = splits.train + splits.val + splits.test
    assert sorted(indices) == list(range(len(elpv.records)))


def test_elpv_binary_is_defective_above_one_half() -> None:
    binary, fine = resolve_data("elpv:binary"), resolve_data("elpv")
    assert binary.class_names == ["functional", "defective"]
    for coarse, four in zip(binary.records[:200], fine.records[:200], strict=True):
        assert coarse.label == int(four.label >= 2)


def test_digits_has_ten_classes_and_no_flips() -> None:
    digits = resolve_data("digits")
    assert len(digits.records) == 1797
    assert digits.augment == "crop"
    assert digits.open(digits.records[0]).size == (8, 8)


def test_digits_read_from_the_file_equal_scikit_learns() -> None:
    from sklearn.datasets import load_digits

    images, targets = digits_arrays()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(targets, reference.target)


def test_folder_without_splits_is_split_stratified(image_folder: Path) -> None:
    source = load_image_folder(image_folder)
    splits = make_splits(source, val_fraction=0.25, test_fraction=0.25, seed=0)
    counts = class_counts(source, splits)
    assert counts["test"] == {"cat": 3, "dog": 3, "fox": 3}
    assert sum(counts["val"].values()) == 7


def test_folder_with_split_folders_is_respected(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, per_class=4, splits=("train", "test"))
    source = load_image_folder(root)
    splits = make_splits(source, val_fraction=0.25, test_fraction=0.5, seed=0)
    assert len(splits.test) == 12
    assert all("/test/" in source.records[i].path for i in splits.test)
    assert len(splits.val) == 3


def test_hidden_folders_are_ignored(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=3)
    make_image_folder(root / ".thumbnails", classes=("a",), per_class=2)
    make_image_folder(root / "a" / ".cache", classes=("x",), per_class=2)
    source = load_image_folder(root)
    assert source.class_names == ["a", "b"]
    assert len(source.records) == 6


def test_a_class_missing_from_train_is_named(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("a", "b"), per_class=2, splits=("train",))
    make_image_folder(tmp_path, classes=("a", "c"), per_class=2, splits=("test",))
    with pytest.raises(DataError, match=r"classes \['c'\] that train/ lacks"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("splits", [(), ("train", "test")])
def test_a_wrapping_folder_names_the_folder_to_pass(tmp_path: Path, splits: tuple[str, ...]) -> None:
    """An unpacked archive's top folder, around the class folders or around their split folders."""
    make_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=2, splits=splits)
    with pytest.raises(DataError, match=r"one class folder, pets/, with folders inside.*--data .*/pets\."):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path / "pets").class_names == ["cat", "dog"]


def test_an_empty_class_is_named(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("a", "b"), per_class=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"\['empty'\] .* hold no images"):
        load_image_folder(tmp_path)


def test_unknown_dataset_names_the_closest_match() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'elpv'"):
        resolve_data("elvp")


def test_subsample_keeps_split_and_class_shares(elpv) -> None:
    small = subsample(elpv, 400, seed=0)
    assert len(small.records) == 400
    assert sum(r.split == "test" for r in small.records) == 100
    assert Counter(r.label for r in small.records)[0] == pytest.approx(400 * 1508 / 2624, abs=2)


def test_fingerprint_ignores_where_the_data_lives_but_not_its_labels(tmp_path: Path) -> None:
    from dataclasses import replace

    from transferkit.data import fingerprint

    first = load_image_folder(make_image_folder(tmp_path / "a", classes=("x", "y"), per_class=3))
    second = load_image_folder(
        make_image_folder(tmp_path / "somewhere" / "else", classes=("x", "y"), per_class=3)
    )
    assert fingerprint(first) == fingerprint(second)
    relabelled = [replace(r, label=1 - r.label) if i == 0 else r for i, r in enumerate(first.records)]
    assert fingerprint(replace(first, records=relabelled)) != fingerprint(first)


@pytest.mark.parametrize("seed", range(5))
def test_tiny_classes_fall_back_to_a_random_split_that_keeps_every_class_in_train(
    tmp_path: Path, seed: int
) -> None:
    source = load_image_folder(
        make_image_folder(tmp_path, classes=tuple("abcdefghijklmnopqrst"), per_class=3)
    )
    splits = make_splits(source, val_fraction=0.1, test_fraction=0.25, seed=seed)
    assert (len(splits.test), len(splits.val)) == (15, 5)  # fewer images than classes: not stratified
    assert sorted(splits.train + splits.val + splits.test) == list(range(60))
    assert {source.records[i].label for i in splits.train} == set(range(20))
    assert len({source.records[i].label for i in splits.test}) > 5  # still drawn across the classes


def test_a_class_of_one_image_trains(tmp_path: Path) -> None:
    from dataclasses import replace

    source = load_image_folder(make_image_folder(tmp_path, classes=("a", "b", "c"), per_class=8))
    single = [r for r in source.records if r.label != 2] + [r for r in source.records if r.label == 2][:1]
    splits = make_splits(replace(source, records=single), val_fraction=0.1, test_fraction=0.25, seed=0)
    assert [i for i in splits.train if single[i].label == 2] == [len(single) - 1]


def test_a_split_that_cannot_be_made_names_the_key() -> None:
    from transferkit.data import ImageRecord, ImageSource

    records = [ImageRecord("one.png", 0, "train"), ImageRecord("two.png", 1, "test")]
    with pytest.raises(DataError, match=r"1 image\(s\) cannot be split with data\.val_fraction=0\.1"):
        make_splits(ImageSource("tiny", ["a", "b"], records), val_fraction=0.1, test_fraction=0.25, seed=0)


@pytest.mark.parametrize("spec", ["/no/such/folder", "relative/missing", "C:\\data\\cells"])
def test_a_missing_folder_is_named(spec: str) -> None:
    with pytest.raises(DataError, match="No folder at"):
        resolve_data(spec)
