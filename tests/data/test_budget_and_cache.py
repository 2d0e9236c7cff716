"""Label budgets, the unlabeled pool, and the on-disk cache of decoded images."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from transferkit.data import ImageSource, load_image_folder, make_splits
from transferkit.data.cache import DiskCache, decode_splits
from transferkit.data.splits import UNLABELED, apply_label_budget, with_unlabeled
from transferkit.testing import make_image_folder
from transferkit.transforms import Preprocessing

PREP = Preprocessing((3, 16, 16), (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> ImageSource:
    return load_image_folder(make_image_folder(tmp_path_factory.mktemp("pets"), per_class=20, size=20))


def test_labels_per_class_keeps_k_of_each_class_over_train_and_val_and_pools_the_rest(
    source: ImageSource,
) -> None:
    splits = make_splits(source, 0.2, 0.25, seed=0)
    budget = apply_label_budget(source, splits, seed=0, per_class=3)
    # every label the run sees counts: validation's too
    assert Counter(source.records[i].label for i in budget.train + budget.val) == {0: 3, 1: 3, 2: 3}
    assert set(budget.train) <= set(splits.train) and set(budget.val) <= set(splits.val)
    assert sorted(budget.train + budget.val + budget.unlabeled) == sorted(splits.train + splits.val)
    assert budget.test == splits.test  # measured on the same images


def test_one_label_per_class_is_a_training_label(source: ImageSource) -> None:
    splits = make_splits(source, 0.5, 0.25, seed=0)  # half of the labels in validation
    for seed in range(10):
        budget = apply_label_budget(source, splits, seed=seed, per_class=1)
        assert Counter(source.records[i].label for i in budget.train) == {0: 1, 1: 1, 2: 1}
        assert budget.val == []


def test_a_smaller_budget_keeps_a_subset_of_a_larger_ones_labels(source: ImageSource) -> None:
    splits = make_splits(source, 0.2, 0.25, seed=0)
    small, large = (apply_label_budget(source, splits, seed=0, per_class=k) for k in (2, 5))
    assert set(small.train + small.val) < set(large.train + large.val)


def test_label_fraction_keeps_a_share_of_each_class(source: ImageSource) -> None:
    splits = make_splits(source, 0.2, 0.25, seed=0)
    budget = apply_label_budget(source, splits, seed=0, fraction=0.25)
    per_class = Counter(source.records[i].label for i in splits.train + splits.val)
    kept = Counter(source.records[i].label for i in budget.train + budget.val)
    assert all(kept[c] == max(1, round(0.25 * n)) for c, n in per_class.items())


def test_the_budget_is_seeded(source: ImageSource) -> None:
    splits = make_splits(source, 0.2, 0.25, seed=0)
    first, again = (apply_label_budget(source, splits, seed=0, per_class=2) for _ in range(2))
    other = apply_label_budget(source, splits, seed=1, per_class=2)
    assert (first.train, first.val) == (again.train, again.val)
    assert first.train + first.val != other.train + other.val


def test_unlabeled_images_join_the_pool_and_no_labeled_split(source: ImageSource, tmp_path: Path) -> None:
    extra = [str(p) for p in sorted(make_image_folder(tmp_path, per_class=2).rglob("*.png"))]
    pooled = with_unlabeled(source, extra)
    splits = make_splits(pooled, 0.2, 0.25, seed=0)
    assert [pooled.records[i].path for i in splits.unlabeled] == extra
    assert all(
        pooled.records[i].split == UNLABELED and pooled.records[i].label == -1 for i in splits.unlabeled
    )
    labeled = splits.train + splits.val + splits.test
    assert sorted(labeled) == list(range(len(source.records)))


def test_a_second_decode_reads_the_disk_cache(
    source: ImageSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    splits = make_splits(source, 0.2, 0.25, seed=0)
    cache = DiskCache(tmp_path / "cache")
    first = decode_splits(source, splits, PREP, cache)
    assert len(list(cache.root.glob("*.npy"))) == 3  # train, val, test

    def no_decoding(self: ImageSource, record: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(ImageSource, "open", no_decoding)
    second = decode_splits(source, splits, PREP, cache)
    for name in ("train", "val", "test"):
        assert torch.equal(first[name].images, second[name].images)
        assert torch.equal(first[name].labels, second[name].labels)


def test_the_cache_key_follows_content_and_preprocessing(source: ImageSource, tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    indices = list(range(6))
    key = cache.key(source, indices, PREP)
    assert cache.key(source, indices, PREP.resized(24)) != key
    assert cache.key(source, indices, replace(PREP, mean=(0.4,) * 3)) == key  # normalization is not cached
    changed = Path(source.records[0].path)
    changed.write_bytes(changed.read_bytes() + b"\0")  # same name, other content
    assert cache.key(source, indices, PREP) != key


def test_an_interrupted_write_leaves_no_cache_file(source: ImageSource, tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)

    def fail(out: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.store("k", (2, 3, 4, 4), fail)
    assert list(tmp_path.rglob("*")) == []  # neither the array nor its temporary file
    assert cache.load("k") is None


def test_unlabeled_files_open_beside_a_source_with_its_own_loader(tmp_path: Path) -> None:
    from transferkit.data import resolve_data

    digits = resolve_data("digits")
    extra = [str(p) for p in sorted(make_image_folder(tmp_path, per_class=1).rglob("*.png"))]
    pooled = with_unlabeled(digits, extra)
    assert pooled.open(pooled.records[-1]).size == (40, 40)  # a file, not a digit reference
    assert pooled.open(pooled.records[0]).size == (8, 8)  # the digits still come from their loader
