"""A fit on a folder with every kind of bad and odd file completes, and lists what it left out."""

import json
from pathlib import Path

import pytest

import transferkit
from transferkit.errors import DataError
from transferkit.testing import BAD_FILES, make_image_folder, make_problem_folder, tiny_fit_config


@pytest.fixture(scope="module")
def problem_run(tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    folder = make_problem_folder(tmp_path_factory.mktemp("problems"))
    return transferkit.fit(tiny_fit_config(folder, tmp_path_factory.mktemp("runs")))


def test_every_bad_file_is_left_out_and_listed(problem_run: transferkit.Run) -> None:
    checks = json.loads((problem_run.dir / "data_checks.json").read_text())
    assert {Path(bad["path"]).name: bad["reason"] for bad in checks["bad_images"]} == BAD_FILES
    for report in ("report.md", "report.html"):
        text = (problem_run.dir / report).read_text()
        assert all(name in text for name in BAD_FILES), report


def test_the_odd_but_readable_files_are_trained_and_tested_on(problem_run: transferkit.Run) -> None:
    predicted = (problem_run.dir / "predictions.csv").read_text()
    assert "phone.jpg" in predicted  # EXIF-rotated, in test
    assert not any(name in predicted for name in BAD_FILES)
    counts = json.loads((problem_run.dir / "data_checks.json").read_text())["counts"]
    assert counts["train"]["cat"] + counts["val"]["cat"] == 6 + 3  # gray, 16-bit and CMYK cats read


def test_leakage_is_reported_in_the_run(problem_run: transferkit.Run) -> None:
    assert "copies of test images" in (problem_run.dir / "report.md").read_text()


def test_bad_images_error_stops_before_any_run_directory(tmp_path: Path) -> None:
    folder = make_problem_folder(tmp_path / "problems")
    config = tiny_fit_config(folder, tmp_path / "runs").with_overrides({"data.bad_images": "error"})
    with pytest.raises(DataError, match=r"zero\.png: zero bytes.*--bad-images skip"):
        transferkit.fit(config)
    assert not (tmp_path / "runs").exists()


def test_a_label_budget_is_trained_on_and_noted(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"data.labels_per_class": 2})
    run = transferkit.fit(config)
    counts = json.loads((run.dir / "data_checks.json").read_text())["counts"]
    labeled = {name: counts["train"].get(name, 0) + counts["val"].get(name, 0) for name in counts["train"]}
    assert set(labeled.values()) == {2}  # validation's labels count against the budget too
    assert "Label budget: 2 labeled images per class" in (run.dir / "report.md").read_text()


def test_unlabeled_images_join_the_pool(image_folder: Path, tmp_path: Path) -> None:
    extra = make_image_folder(tmp_path / "extra", per_class=2)
    run = transferkit.fit(
        tiny_fit_config(image_folder, tmp_path / "runs").with_overrides({"data.unlabeled": str(extra)})
    )
    assert "6 images form the unlabeled pool" in (run.dir / "report.md").read_text()
