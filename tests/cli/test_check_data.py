"""`transferkit check-data`: tables on stdout, exit code 1 when the data has errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transferkit.cli.main import main
from transferkit.testing import make_image_folder


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_image_folder(
        tmp_path_factory.mktemp("bad"), classes=("cat", "dog"), per_class=5, splits=("train", "test")
    )
    (root / "train/cat/empty.png").write_bytes(b"")
    (root / "train/dog/readme.jpg").write_text("not a picture\n")
    png = (root / "train/dog/dog_000.png").read_bytes()
    (root / "test/dog/half.png").write_bytes(png[: len(png) // 2])
    shutil.copy(root / "train/cat/cat_001.png", root / "test/cat/leaked.png")
    return root


def _output(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().out.split())  # table cells may wrap at 80 columns


def test_bad_folder_exits_1_and_lists_every_problem(
    bad_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-data", str(bad_folder), "--val-fraction", "0"]) == 1
    out = _output(capsys)
    for expected in (
        "train/cat/empty.png",
        "zero bytes",
        "train/dog/readme.jpg",
        "not an image",
        "test/dog/half.png",
        "truncated",
        "test/cat/leaked.png",
        "error: 3 image(s) cannot be read",
        "copies of test images in train or val",
    ):
        assert expected in out, expected
    assert "│ cat │ 5 │ 0 │ 6 │ 11 │" in out  # readable: 5 train, 0 val, 5 + the leaked copy in test


def test_clean_folder_exits_0_with_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_image_folder(tmp_path, classes=("cat", "dog", "fox"), per_class=12)
    argv = [
        "check-data",
        str(folder),
        "--val-fraction",
        "0.25",
        "--test-fraction",
        "0.25",
        "--split-seed",
        "3",
    ]
    assert main(argv) == 0
    out = _output(capsys)
    assert "│ fox │ 6 │ 3 │ 3 │ 12 │" in out
    assert "│ total │ 20 │ 7 │ 9 │ 36 │" in out
    assert "RGB: 36" in out and "no problems found" in out


def test_the_dataset_may_be_named_as_fit_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_image_folder(tmp_path, classes=("cat", "dog"), per_class=6)
    assert main(["check-data", "--data", str(folder)]) == 0
    assert "│ total │" in _output(capsys)
    with pytest.raises(SystemExit, match="2"):
        main(["check-data", str(folder), "--data", str(folder)])
    assert "not allowed with argument SPEC" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check-data", "elvp"], "Did you mean 'elpv'"),
        (["check-data", "digits", "--test-fraction", "1.5"], "data.test_fraction"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in " ".join(capsys.readouterr().err.split())
