"""check_data on a folder holding every kind of bad and odd file, and on in-memory sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import ImageRecord, ImageSource, Splits, checks, load_image_folder, make_splits
from transferkit.data.checks import (
    CheckCache,
    DataReport,
    Spread,
    check_data,
    difference_hash,
    near_duplicate_pairs,
)
from transferkit.errors import DataError
from transferkit.testing import BAD_FILES, make_problem_folder
from transferkit.testing.problems import smooth_image


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_problem_folder(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="module")
def odd_report(odd_folder: Path) -> DataReport:
    source = load_image_folder(odd_folder)
    return check_data(source, make_splits(source, val_fraction=0.0, test_fraction=0.25, seed=0))


def test_every_bad_file_is_found_with_its_reason(odd_report: DataReport) -> None:
    assert {Path(bad.path).name: bad.reason for bad in odd_report.bad_images} == BAD_FILES
    assert {Path(bad.path).name: bad.split for bad in odd_report.bad_images}["noise.png"] == "test"
    assert "5 image(s) cannot be read" in odd_report.errors[0]


def test_odd_but_readable_files_are_read(odd_report: DataReport) -> None:
    modes = odd_report.modes
    assert {"RGB", "L", "P", "CMYK"} <= set(modes)
    assert modes.get("I;16", 0) + modes.get("I", 0) == 1
    assert odd_report.widths is not None and odd_report.heights is not None
    assert (odd_report.widths.min, odd_report.heights.max) == (24, 56)  # EXIF rotation applied
    assert odd_report.counts == {
        "train": {"cat": 6 + 3, "dog": 6 + 3},
        "val": {"cat": 0, "dog": 0},
        "test": {"cat": 6 + 1, "dog": 6 + 1},
    }
    assert odd_report.num_readable == odd_report.num_images - len(BAD_FILES)


def test_an_exact_copy_across_train_and_test_is_leakage(odd_report: DataReport) -> None:
    exact = [group for group in odd_report.duplicates if group.kind == "exact"]
    assert len(exact) == 1
    assert [Path(p).name for p in exact[0].paths] == ["cat_000.png", "copy_of_cat_000.png"]
    assert exact[0].splits == ["train", "test"] and exact[0].leakage
    assert any("copies of test images" in error and "1 exact" in error for error in odd_report.errors)


def test_a_brightened_jpeg_copy_is_a_near_duplicate_within_train(odd_report: DataReport) -> None:
    near = [group for group in odd_report.duplicates if group.kind == "near"]
    assert [sorted(Path(p).name for p in group.paths) for group in near] == [
        ["scene.png", "scene_brighter.jpg"]
    ]
    assert near[0].splits == ["train"] and not near[0].leakage
    assert any("within one split (1 near)" in warning for warning in odd_report.warnings)


def test_the_report_is_plain_json(odd_report: DataReport) -> None:
    data = json.loads(json.dumps(odd_report.to_dict()))
    assert data["num_readable"] == odd_report.num_readable
    assert [group["leakage"] for group in data["duplicates"]] == [True, False]
    assert {bad["reason"] for bad in data["bad_images"]} == set(BAD_FILES.values())


def test_a_clean_folder_has_no_errors_or_warnings(image_folder: Path) -> None:
    source = load_image_folder(image_folder)
    report = check_data(source, make_splits(source, val_fraction=0.2, test_fraction=0.25, seed=0))
    assert (report.errors, report.warnings, report.duplicates, report.bad_images) == ([], [], [], [])
    assert report.modes == {"RGB": 36}
    assert report.imbalance == 1.0


def _memory_source(
    labels: list[int], splits: list[str], broken: int | None = None, classes: list[str] | None = None
) -> ImageSource:
    def load(record: ImageRecord, channels: int) -> Image.Image:
        index = int(record.path.split("/")[1])
        if index == broken:
            raise DataError(f"Cannot decode image {record.path}: bad row")
        pixels = np.random.default_rng(index % 1000).integers(0, 256, (8, 8), dtype=np.uint8)
        return Image.fromarray(pixels, mode="L")

    records = [
        ImageRecord(f"memory/{i}", label, split)
        for i, (label, split) in enumerate(zip(labels, splits, strict=True))
    ]
    return ImageSource("memory", classes or ["a", "b", "c"], records, channels=1, loader=load)


def _own_splits(source: ImageSource) -> Splits:
    by_split = {
        name: [i for i, r in enumerate(source.records) if r.split == name] for name in ("train", "test")
    }
    return Splits(by_split["train"], [], by_split["test"])


def test_loader_records_are_opened_through_the_source_and_hashed_by_pixels() -> None:
    # Record 1000 draws the same pixels as record 0 (seeded by index % 1000); record 3 cannot be opened.
    labels = [0] * 6 + [1] * 6
    splits = ["train"] * 5 + ["test"] + ["train"] * 5 + ["test"]
    source = _memory_source(labels, splits, broken=3)
    source.records[11] = ImageRecord("memory/1000", 1, "test")
    report = check_data(source, _own_splits(source))
    assert [(bad.index, bad.reason) for bad in report.bad_images] == [
        (3, "undecodable (Cannot decode image memory/3: bad row)")
    ]
    assert [(group.kind, group.indices, group.leakage) for group in report.duplicates] == [
        ("exact", [0, 11], True)
    ]
    assert any("carry different labels" in warning for warning in report.warnings)


def test_missing_files_are_reported() -> None:
    records = [ImageRecord("/nowhere/a.png", 0, "train"), ImageRecord("/nowhere/b.png", 1, "test")]
    source = ImageSource("gone", ["a", "b"], records)
    report = check_data(source, Splits([0], [], [1]))
    assert [bad.reason for bad in report.bad_images] == ["missing", "missing"]
    assert report.classes_without_train == ["a", "b"]
    assert report.widths is None and report.imbalance is None


def test_imbalance_tiny_classes_and_classes_without_train_images() -> None:
    labels = [0] * 60 + [1] * 3 + [2] * 4
    splits = ["train"] * 63 + ["test"] * 4
    source = _memory_source(labels, splits)
    report = check_data(source, _own_splits(source))
    assert report.imbalance == 20.0
    assert report.classes_without_train == ["c"]
    assert any("no readable train image" in error for error in report.errors)
    assert any("imbalanced 20.0x (a: 60, b: 3)" in warning for warning in report.warnings)
    assert any("1 class(es) with fewer than 5 train images: b (3);" in warning for warning in report.warnings)


def test_elongation_is_read_off_the_train_and_validation_images_only(tmp_path: Path) -> None:
    sizes = {"train": [(400, 100), (100, 300), (120, 100)], "val": [(200, 100)], "test": [(1000, 10)]}
    records = []
    for split, shapes in sizes.items():
        for n, (width, height) in enumerate(shapes):
            path = tmp_path / f"{split}{n}.png"
            Image.new("RGB", (width, height), (n * 40, 90, 30)).save(path)
            records.append(ImageRecord(str(path), n % 2, split))
    source = ImageSource("shapes", ["a", "b"], records)
    report = check_data(source, Splits([0, 1, 2], [3], [4]))
    assert report.elongation == Spread(1.2, 2.5, 4.0)  # the test image's 100 : 1 takes no part


def _collected(tmp_path: Path, shapes: dict[str, list[tuple[int, int, str]]]) -> DataReport:
    """A train-only folder: each class's images at the (width, height, mode) listed for it."""
    rng = np.random.default_rng(0)
    records = []
    for label, (name, images) in enumerate(shapes.items()):
        for n, (width, height, mode) in enumerate(images):
            path = tmp_path / f"{name}{n}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode).save(path)
            records.append(ImageRecord(str(path), label, "train"))
    source = ImageSource("collected", list(shapes), records)
    return check_data(source, Splits(list(range(len(records))), [], []))


def _shortcuts(report: DataReport) -> list[str]:
    return [warning for warning in report.warnings if "alone tells the train classes apart" in warning]


def test_classes_told_apart_by_image_size_or_colour_mode_are_flagged(tmp_path: Path) -> None:
    # healthy scans at one scanner's size and in colour, sick ones at another's and in grey: a shortcut
    report = _collected(
        tmp_path, {"healthy": [(40, 30, "RGB")] * 9 + [(32, 32, "RGB")], "sick": [(32, 32, "L")] * 10}
    )
    size, mode = _shortcuts(report)
    assert "The image size alone" in size and "healthy: 40 x 30 (9 of 10); sick: 32 x 32 (10 of 10)" in size
    assert "gets 95% right" in size  # the one healthy image at 32 x 32 is named sick
    assert "The colour mode alone" in mode and "healthy: RGB (10 of 10); sick: L (10 of 10)" in mode


@pytest.mark.parametrize(
    "shapes",
    [
        {"a": [(32, 32, "RGB")] * 10, "b": [(32, 32, "RGB")] * 10},  # one size for all
        {
            "a": [(30 + n, 32, "RGB") for n in range(10)],
            "b": [(50 + n, 32, "RGB") for n in range(10)],
        },  # each its own
        {
            "a": [(32, 32, "RGB"), (40, 30, "RGB")] * 5,
            "b": [(32, 32, "RGB"), (40, 30, "RGB")] * 5,
        },  # mixed alike
        {"a": [(32, 32, "RGB")] * 18, "b": [(40, 30, "RGB"), (32, 32, "RGB")]},  # b's odd one is alone
        {"a": [(32, 32, "RGB")] * 10, "b": []},  # one class: nothing to tell apart
    ],
)
def test_sizes_that_do_not_tell_the_classes_apart_are_not_flagged(
    tmp_path: Path, shapes: dict[str, list[tuple[int, int, str]]]
) -> None:
    assert _shortcuts(_collected(tmp_path, shapes)) == []


def test_many_tiny_classes_are_counted_and_the_smallest_named() -> None:
    labels = [k for k in range(30) for _ in range(4 if k % 10 else 2)]  # 30 classes of 2 or 4
    source = _memory_source(labels, ["train"] * len(labels), classes=[f"class{k}" for k in range(30)])
    (warning,) = [w for w in check_data(source, _own_splits(source)).warnings if "fewer than" in w]
    assert warning.startswith("30 class(es) with fewer than 5 train images: ")
    assert "images: class0 (2), class10 (2), class20 (2), class1 (4)," in warning
    assert warning.count(" (") == 8 and "and 22 more;" in warning


def _reference_difference_hash(image: Image.Image) -> int:
    small = image.convert("L").resize((9, 8), Image.Resampling.BOX)
    value = 0
    for y in range(8):
        for x in range(8):
            value = value << 1 | int(small.getpixel((x, y)) > small.getpixel((x + 1, y)))
    return value


@pytest.mark.parametrize("seed", range(5))
def test_difference_hash_matches_a_pixel_by_pixel_reference(seed: int) -> None:
    image = smooth_image(seed, (50, 30))
    assert difference_hash(image) == _reference_difference_hash(image)


def test_difference_hash_of_ramps() -> None:
    rising = Image.fromarray(np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1)))
    assert difference_hash(rising) == 0
    assert difference_hash(rising.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == 2**64 - 1


def test_near_duplicates_among_thousands_are_found_fast() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    thumbnails = rng.integers(0, 256, (3000, 32 * 32), dtype=np.uint8)
    hashes[100], thumbnails[100] = hashes[7] ^ np.uint64(0b111), thumbnails[7] // 2 + 20  # 3 bits, darker
    hashes[200], thumbnails[200] = hashes[8] ^ np.uint64(0b11111), thumbnails[8]  # 5 bits: not near
    hashes[300] = hashes[9]  # same hash, different picture: not near
    hashes[2000:2500] = 0  # five hundred images alike at hash level (e.g. blank)
    pairs = near_duplicate_pairs(hashes, thumbnails)
    assert pairs.tolist() == [[7, 100]]


def test_a_copy_in_the_unlabeled_pool_is_neither_leakage_nor_a_label_conflict(tmp_path: Path) -> None:
    from transferkit.data.splits import with_unlabeled

    folder = make_problem_folder(tmp_path / "data")
    source = load_image_folder(folder)
    pooled = with_unlabeled(source, [str(folder / "train/cat/cat_001.png")])
    report = check_data(pooled, make_splits(pooled, val_fraction=0.0, test_fraction=0.25, seed=0))
    group = next(g for g in report.duplicates if str(folder / "train/cat/cat_001.png") in g.paths)
    assert group.splits == ["train", "unlabeled"] and group.labels[-1] == "(unlabeled)"
    assert not group.leakage and not group.mixed_labels


def test_a_second_check_of_the_same_files_reads_back_what_the_first_found(
    odd_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = shutil.copytree(odd_folder, tmp_path / "odd")  # one of its files changes below
    source = load_image_folder(folder)
    splits = make_splits(source, val_fraction=0.0, test_fraction=0.25, seed=0)
    cache = CheckCache(tmp_path / "checks")
    first = check_data(source, splits, cache)
    decoded: list[str] = []
    decode = checks.decode_image

    def counting(path: str, channels: int, resized_to: int | None = None) -> Image.Image:
        decoded.append(path)
        return decode(path, channels, resized_to=resized_to)

    monkeypatch.setattr(checks, "decode_image", counting)
    again = check_data(source, splits, cache)
    assert decoded == []
    assert again.to_dict() == first.to_dict()
    assert again.to_dict() == check_data(source, splits).to_dict()  # the same as checking anew
    uncached = len(decoded)  # every file that the stat checks let through
    assert uncached > first.num_images / 2

    changed = sorted(folder.rglob("dog_*.png"))[0]
    Image.fromarray(np.full((40, 40, 3), 7, dtype=np.uint8)).save(changed)
    decoded.clear()
    check_data(source, splits, cache)
    assert len(decoded) == uncached  # one file changed: the set is checked again

    for saved in cache.root.iterdir():
        saved.write_bytes(b"not an archive")
    decoded.clear()
    assert check_data(source, splits, cache).to_dict()["num_images"] == first.num_images
    assert decoded  # an unreadable saved check is replaced, never trusted


def test_large_photos_report_their_own_size_turned_upright(tmp_path: Path) -> None:
    """The check decodes JPEGs at thumbnail scale; the sizes it reports are still the files' own."""
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: stored 1600 x 1200, shown 1200 x 1600
    for label, seed in (("a", 1), ("b", 2)):
        (tmp_path / label).mkdir()
        for index in range(3):
            photo = smooth_image(seed * 10 + index, (1600, 1200))
            photo.save(tmp_path / label / f"{index}.jpg", exif=exif if label == "a" else Image.Exif())
    source = load_image_folder(tmp_path)
    report = check_data(source, make_splits(source, val_fraction=0.0, test_fraction=0.34, seed=0))
    assert report.widths is not None and report.heights is not None
    assert (report.widths.min, report.widths.max) == (1200, 1600)
    assert (report.heights.min, report.heights.max) == (1200, 1600)
