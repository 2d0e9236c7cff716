import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.data import ImageSource, load_manifest, load_unlabeled, resolve_data
from transferkit.data.other_labels import auxiliary_labels
from transferkit.errors import DataError
from transferkit.testing import make_image_folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """tmp_path/images/{cat,dog,fox}/<name>_00n.png, three of each."""
    return make_image_folder(tmp_path / "images", classes=("cat", "dog", "fox"), per_class=3, size=8)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _rows(classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> list[list[object]]:
    return [[f"images/{name}/{name}_{n:03d}.png", name] for name in classes for n in range(per_class)]


def test_a_csv_without_splits_lists_every_image(tmp_path: Path, images: Path) -> None:
    manifest = _write_csv(tmp_path / "labels.csv", ["path", "label"], _rows())
    source = resolve_data(str(manifest))
    assert source.class_names == ["cat", "dog"]
    assert [(r.label, r.split) for r in source.records] == [(0, "")] * 3 + [(1, "")] * 3
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in source.records)
    assert source.open(source.records[0]).mode == "RGB"


def test_a_csv_keeps_its_splits_and_builds_classes_from_train(tmp_path: Path, images: Path) -> None:
    splits = ["train", "", "val", "train", "train", "test"]
    rows = [[*row, split] for row, split in zip(_rows(), splits, strict=True)]
    rows.append(["images/fox/fox_000.png", "fox", "train"])
    source = load_manifest(_write_csv(tmp_path / "labels.csv", ["path", "label", "split"], rows))
    assert source.class_names == ["cat", "dog", "fox"]
    assert [r.split for r in source.records] == [*splits, "train"]


def test_jsonl_labels_may_be_integers_and_stay_names(tmp_path: Path, images: Path) -> None:
    rows = [{"path": path, "label": int(name == "dog"), "split": "train"} for path, name in _rows()]
    rows[0]["split"] = None  # JSON null means "no split", like an empty CSV cell
    source = load_manifest(_write_jsonl(tmp_path / "labels.jsonl", rows))
    assert source.class_names == ["0", "1"]
    assert [r.label for r in source.records] == [0, 0, 0, 1, 1, 1]
    assert source.records[0].split == ""


def test_absolute_paths_are_kept(tmp_path: Path, images: Path) -> None:
    rows = [[str((tmp_path / path).absolute()), label] for path, label in _rows()]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = load_manifest(_write_csv(elsewhere / "labels.csv", ["path", "label"], rows))
    assert [r.path for r in source.records] == [row[0] for row in rows]


def test_paths_written_on_windows_are_read(tmp_path: Path, images: Path) -> None:
    rows = [[path.replace("/", "\\"), label] for path, label in _rows()]
    source = resolve_data(str(_write_csv(tmp_path / "labels.csv", ["path", "label"], rows)))
    assert [Path(r.path) for r in source.records] == [tmp_path / path for path, _ in _rows()]


def test_a_hugging_face_metadata_jsonl_uses_file_name(tmp_path: Path, images: Path) -> None:
    rows = [{"file_name": path.removeprefix("images/"), "species": label} for path, label in _rows()]
    manifest = _write_jsonl(images / "metadata.jsonl", rows)
    source = resolve_data(str(manifest), label_column="species")
    assert source.class_names == ["cat", "dog"]
    assert Path(source.records[0].path) == images / "cat" / "cat_000.png"


def test_image_column_names_the_path_column(tmp_path: Path, images: Path) -> None:
    manifest = _write_csv(tmp_path / "labels.csv", ["file", "label"], _rows())
    assert len(load_manifest(manifest, image_column="file").records) == 6


def test_columns_of_other_names_are_found_by_their_values(tmp_path: Path, images: Path) -> None:
    """A spreadsheet's own names: the one column of image file names holds the paths, and the one column
    left beside it (split aside) the labels."""
    rows = [[label, path, "train"] for path, label in _rows()]
    source = load_manifest(_write_csv(tmp_path / "labels.csv", ["defect", "filename", "split"], rows))
    assert source.class_names == ["cat", "dog"]
    assert [Path(r.path).name for r in source.records][:2] == ["cat_000.png", "cat_001.png"]
    assert [r.split for r in source.records] == ["train"] * 6


def test_header_and_values_may_carry_spaces_and_a_bom(tmp_path: Path, images: Path) -> None:
    lines = ["path , label"] + [f"{path} , {label}" for path, label in _rows()]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n\n", encoding="utf-8-sig")
    assert load_manifest(manifest).class_names == ["cat", "dog"]


def _missing_files(tmp_path: Path) -> Path:
    rows = [*_rows(), *([f"images/gone_{n}.png", "cat"] for n in range(7))]
    return _write_csv(tmp_path / "m.csv", ["path", "label"], rows)


# (what the manifest holds, the DataError it must raise)
ERROR_CASES = {
    "empty file": ("m.csv", "", r"m\.csv is empty; write a header line"),
    "header only": ("m.csv", "path,label\n", r"lists no images"),
    "no label column": ("m.csv", "path\nimages/cat/cat_000.png\n", r"no 'label' column.*\['path'\]"),
    "two label columns": (
        "m.csv",
        "path,kind,colour\nimages/cat/cat_000.png,cat,grey\n",
        r"no 'label' column.*--label-column",
    ),
    "no path column": ("m.csv", "image,label\nphoto-1,cat\n", r"no path column.*'path'.*--image-column"),
    "two columns of image names": (
        "m.csv",
        "image,mask,label\na.png,a_mask.png,cat\n",
        r"no path column.*\['image', 'mask', 'label'\]",
    ),
    "no header": (
        "m.csv",
        "images/cat/cat_000.png,cat\nimages/dog/dog_000.png,dog\n",
        r"starts with a row of data.*add one such as path,label,split",
    ),
    "bad JSON": ("m.jsonl", '{"path": "a.png", "label": "cat"}\n{"path": \n', r"line 2 is not valid JSON"),
    "JSON array": (
        "m.jsonl",
        '["images/cat/cat_000.png", "cat"]\n',
        r"line 1 holds a JSON list, not an object",
    ),
    "float label": (
        "m.jsonl",
        '{"path": "images/cat/cat_000.png", "label": 1.5}\n',
        r"line 1: label is 1\.5",
    ),
    "null label": ("m.jsonl", '{"path": "images/cat/cat_000.png", "label": null}\n', r"label is None"),
    "bool label": ("m.jsonl", '{"path": "images/cat/cat_000.png", "label": true}\n', r"label is True"),
    "empty label": ("m.csv", "path,label\nimages/cat/cat_000.png,\n", r"line 2: label is ''"),
    "number as path": ("m.jsonl", '{"path": 7, "label": "cat"}\n', r"path is 7; give the image's path"),
    "bad split": ("m.csv", "path,label,split\nimages/cat/cat_000.png,cat,holdout\n", r"split is 'holdout'"),
    "not UTF-8": ("m.csv", b"path,label\n\xff\xfe\xfa,cat\n", r"not UTF-8 text"),
    "unclosed quote": ("m.csv", 'path,label\n"' + "x" * 200_000 + "\n", r"not valid CSV"),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_bad_manifests_raise_a_clear_error(tmp_path: Path, images: Path, case: tuple[str, str, str]) -> None:
    name, content, message = case
    manifest = tmp_path / name
    manifest.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message):
        load_manifest(manifest)


def test_missing_files_are_counted_and_the_first_listed(tmp_path: Path, images: Path) -> None:
    with pytest.raises(DataError, match=r"lists 7 file\(s\) that do not exist") as raised:
        load_manifest(_missing_files(tmp_path))
    assert "gone_4.png" in str(raised.value) and "gone_5.png" not in str(raised.value)


def test_a_label_that_only_test_has_is_named(tmp_path: Path, images: Path) -> None:
    rows = [[*row, "train"] for row in _rows()] + [["images/fox/fox_000.png", "fox", "test"]]
    manifest = _write_csv(tmp_path / "m.csv", ["path", "label", "split"], rows)
    with pytest.raises(
        DataError, match=r"Manifest .*m\.csv has test classes \['fox'\] that the train split lacks"
    ):
        load_manifest(manifest)


def test_one_class_is_not_enough(tmp_path: Path, images: Path) -> None:
    manifest = _write_csv(tmp_path / "m.csv", ["path", "label"], _rows(classes=("cat",)))
    with pytest.raises(DataError, match=r"at least two classes; found \['cat'\]"):
        load_manifest(manifest)


def test_an_image_listed_twice_is_refused(tmp_path: Path, images: Path) -> None:
    rows = [*_rows(), ["images/cat/cat_000.png", "cat"]]
    with pytest.raises(DataError, match=r"more than once"):
        load_manifest(_write_csv(tmp_path / "m.csv", ["path", "label"], rows))


def test_a_missing_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"No manifest at .*labels\.csv"):
        resolve_data(str(tmp_path / "labels.csv"))


def test_column_choices_are_refused_for_sources_without_columns(images: Path) -> None:
    with pytest.raises(DataError, match=r"data\.label_column apply to hf: datasets and manifests"):
        resolve_data(str(images), label_column="species")


def test_unlabeled_images_come_from_a_folder_recursively(tmp_path: Path, images: Path) -> None:
    (images / "notes.txt").write_text("not an image")
    make_image_folder(images / ".thumbnails", classes=("cat",), per_class=2, size=8)
    paths = load_unlabeled(str(images))
    assert len(paths) == 9
    assert all(Path(p).is_absolute() and "/." not in p for p in paths)


def test_unlabeled_images_come_from_a_manifest_of_paths(tmp_path: Path, images: Path) -> None:
    paths = [row[0] for row in _rows()]
    manifest = _write_jsonl(tmp_path / "pool.jsonl", [{"file_name": path} for path in paths])
    assert load_unlabeled(str(manifest)) == [str(tmp_path / path) for path in paths]


def test_unlabeled_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"No images found"):
        load_unlabeled(str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"No folder or manifest"):
        load_unlabeled(str(tmp_path / "nowhere"))


# Fuzzing: whatever a manifest holds, the parser returns a source or raises DataError, nothing else.
# Values are mostly plausible, so that examples get past the first checks, with random text mixed in.
_text = st.text(max_size=12)
_image = st.sampled_from([f"images/{c}/{c}_{n:03d}.png" for c in ("cat", "dog", "fox") for n in range(3)])
_VALID = {
    "path": _image,
    "file_name": _image,
    "label": st.sampled_from(["cat", "dog", "fox", " dog "]) | st.integers(0, 2),
    "split": st.sampled_from(["train", "train", "val", "test", ""]),
    "x": _text,
}
_JUNK = st.none() | st.booleans() | st.integers() | st.floats() | _text | st.lists(_text, max_size=2)
_HEADERS = [["path", "label"], ["path", "label", "split"], ["file_name", "label", "split"]]
# Three headers in four are plausible; the fourth is a random choice of columns.
_header = st.sampled_from([*_HEADERS, []]).flatmap(
    lambda header: st.just(header) if header else st.lists(st.sampled_from(list(_VALID)), max_size=4)
)


def _cell(column: str, junk: bool, json: bool = False) -> st.SearchStrategy[object]:
    return _VALID[column] | (_JUNK if json else _text) if junk else _VALID[column]


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parses_or_data_error(manifest: Path) -> None:
    try:
        source = load_manifest(manifest)
    except DataError:
        return
    assert isinstance(source, ImageSource)
    assert source.class_names == sorted(source.class_names) and len(source.class_names) >= 2
    assert all(0 <= r.label < len(source.class_names) and Path(r.path).is_file() for r in source.records)


@_FUZZ
@given(header=_header, junk=st.booleans(), data=st.data())
def test_fuzzed_csv_rows(
    tmp_path: Path, images: Path, header: list[str], junk: bool, data: st.DataObject
) -> None:
    row = st.tuples(*(_cell(column, junk) for column in header)).map(list)
    rows = data.draw(st.lists(row, max_size=8, unique_by=lambda r: str(r[:1])))
    _parses_or_data_error(_write_csv(tmp_path / "fuzz.csv", header, rows))


@_FUZZ
@given(junk=st.booleans(), data=st.data())
def test_fuzzed_jsonl_rows(tmp_path: Path, images: Path, junk: bool, data: st.DataObject) -> None:
    keys = ("path", "label", "split")
    row = (
        st.fixed_dictionaries({}, optional={key: _cell(key, True, json=True) for key in (*keys, "file_name")})
        if junk
        else st.fixed_dictionaries(
            {k: _cell(k, False) for k in keys[:2]}, optional={"split": _cell("split", False)}
        )
    )
    rows = data.draw(st.lists(row, max_size=8, unique_by=lambda r: str(r.get("path"))))
    _parses_or_data_error(_write_jsonl(tmp_path / "fuzz.jsonl", rows))


@_FUZZ
@given(
    start=st.sampled_from([b"", b"path,label,split\n", b'{"path": "images/cat/cat_000.png", "label": ']),
    content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    suffix=st.sampled_from([".csv", ".jsonl"]),
)
def test_fuzzed_bytes(tmp_path: Path, images: Path, start: bytes, content: bytes, suffix: str) -> None:
    manifest = tmp_path / f"fuzz{suffix}"
    manifest.write_bytes(start + content)
    _parses_or_data_error(manifest)


def test_further_columns_are_other_labels_an_auxiliary_head_can_learn(tmp_path: Path, images: Path) -> None:
    rows = [[*row, "mono" if n % 2 else "poly", ""] for n, row in enumerate(_rows())]
    rows[0][-1] = "north"  # one image with a value in the sparse column
    manifest = _write_csv(tmp_path / "labels.csv", ["path", "label", "crystal", "site"], rows)
    source = resolve_data(str(manifest))
    assert [r.other_label("crystal") for r in source.records] == ["poly", "mono"] * 3
    assert source.records[0].other_label("site") == "north"
    assert source.records[1].other_label("site") is None  # an empty value: the image has none

    crystal = auxiliary_labels(source, "crystal")
    assert crystal.class_names == ["mono", "poly"]
    assert crystal.of([1, 0, 2]).tolist() == [0, 1, 1]
    with pytest.raises(DataError, match=r"no label 'shape'.*\['crystal', 'site'\]"):
        auxiliary_labels(source, "shape")
    with pytest.raises(DataError, match="single value 'north'"):
        auxiliary_labels(source, "site")


def test_a_source_without_other_labels_says_how_to_give_one(tmp_path: Path, images: Path) -> None:
    source = resolve_data(str(_write_csv(tmp_path / "labels.csv", ["path", "label"], _rows())))
    with pytest.raises(DataError, match=r"it has none.*further columns"):
        auxiliary_labels(source, "crystal")


def test_labels_that_differ_only_in_case_or_spacing_are_named(
    tmp_path: Path, images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        [path, {"cat": "Cat", "dog": "dog", "fox": "cat "}[label]]
        for path, label in _rows(("cat", "dog", "fox"))
    ]
    rows[-1][1] = "Cat"
    source = resolve_data(str(_write_csv(tmp_path / "labels.csv", ["path", "label"], rows)))
    assert source.class_names == ["Cat", "cat", "dog"]  # kept apart: only the user knows
    assert "differ only in case, spaces or underscores: 'Cat' and 'cat'" in caplog.text
