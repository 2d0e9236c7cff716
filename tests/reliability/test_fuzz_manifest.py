"""Fuzzing manifests at the level of characters and JSON values, beside tests/data/test_manifest.py.

That file fuzzes rows of plausible cells; this one feeds the CSV and JSON Lines parsers text built
from the characters that matter to them (quotes, separators, line breaks, NUL, a BOM) and lines holding
any JSON value, nested or huge. Labelled manifests (`load_manifest`) and path-only ones (`load_unlabeled`,
which `--unlabeled` and `predict` read) must give a result or a DataError, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transferkit.data import ImageSource, load_manifest, load_unlabeled
from transferkit.errors import DataError
from transferkit.testing import make_image_folder

TimeLimit = Callable[[float], AbstractContextManager[None]]
IMAGES = [f"images/{name}/{name}_{n:03d}.png" for name in ("cat", "dog") for n in range(3)]
FUZZ = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding images/{cat,dog}/*.png, where the fuzzed manifests are written."""
    root = tmp_path_factory.mktemp("manifests")
    make_image_folder(root / "images", classes=("cat", "dog"), per_class=3, size=8)
    return root


# Cells: real paths and labels, and text made of what CSV treats specially.
csv_text = st.text(alphabet=st.sampled_from(list(',"\r\n\x00\ufeff \t;|ab')), max_size=12)
cell = st.sampled_from([*IMAGES, "cat", "dog", "train", "val", "test", ""]) | csv_text
csv_line = st.lists(cell, max_size=5).map(",".join)
newline = st.sampled_from(["\n", "\r\n", "\r", "\u2028"])
header = st.sampled_from(["path,label", "path,label,split", "\ufeffpath,label", "file_name,label", ""])
csv_manifest = st.tuples(header, newline, st.lists(csv_line, max_size=8)).map(
    lambda parts: parts[1].join([parts[0], *parts[2]])
)

# JSON values of every kind: big and non-finite numbers, odd characters, nesting.
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([*IMAGES, "cat", "dog", "train", "test", "\u2028"])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
json_row = (
    st.fixed_dictionaries({}, optional={key: json_value for key in ("path", "file_name", "label", "split")})
    | json_value
)
jsonl_manifest = st.lists(
    st.one_of(json_row.map(json.dumps), st.text(max_size=20), st.just("[" * 5000)), max_size=8
).map("\n".join)


def _loads_or_data_error(path: Path, time_limit: TimeLimit) -> None:
    with time_limit(10):
        try:
            source = load_manifest(path)
        except DataError as err:
            assert path.name in str(err)
        else:
            assert isinstance(source, ImageSource)
            assert source.class_names == sorted(source.class_names) and len(source.class_names) >= 2
            assert all(
                0 <= r.label < len(source.class_names) and Path(r.path).is_file() for r in source.records
            )
        try:
            paths = load_unlabeled(str(path))
        except DataError as err:
            assert path.name in str(err)
        else:
            assert paths and all(Path(p).is_file() for p in paths)


@pytest.mark.fuzz
@FUZZ
@given(text=csv_manifest)
@example(text="path,label\n" + "\n".join(f"{image},{image[7:10]}" for image in IMAGES))
@example(text='path,label\n"images/cat/cat_000.png\x00",cat\n' + '"' * 3)
def test_csv_text_of_special_characters(folder: Path, text: str, time_limit: TimeLimit) -> None:
    manifest = folder / "fuzz.csv"
    manifest.write_text(text, encoding="utf-8", newline="")
    _loads_or_data_error(manifest, time_limit)


@pytest.mark.fuzz
@FUZZ
@given(text=jsonl_manifest)
@example(text="\n".join(json.dumps({"path": image, "label": image[7:10]}) for image in IMAGES))
@example(text='{"path": "images/cat/cat_000.png", "label": ' + "9" * 5000 + "}")
def test_jsonl_lines_of_any_json(folder: Path, text: str, time_limit: TimeLimit) -> None:
    manifest = folder / "fuzz.jsonl"
    manifest.write_text(text, encoding="utf-8", newline="")
    _loads_or_data_error(manifest, time_limit)
