"""`transferkit predict` and `transferkit export` on a fitted run."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

import transferkit
from transferkit.cli.main import main
from transferkit.testing import tiny_fit_config


def cli(argv: list[str]) -> int:
    return main(argv)


@pytest.fixture(scope="module")
def run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    return transferkit.fit(tiny_fit_config(image_folder, tmp_path_factory.mktemp("runs")))


@pytest.fixture
def folder(image_folder: Path, tmp_path: Path) -> Path:
    """Four images in nested folders, a corrupt PNG and a text file that is no image."""
    images = tmp_path / "incoming"
    (images / "nested").mkdir(parents=True)
    for name in ("cat/cat_000.png", "dog/dog_000.png", "fox/fox_000.png"):
        shutil.copy(image_folder / name, images / Path(name).name)
    shutil.copy(image_folder / "fox/fox_001.png", images / "nested" / "fox_001.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "notes.txt").write_text("not an image, not listed")
    return images


def test_csv_lists_every_image_and_the_corrupt_one_with_its_error(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["predict", str(run.dir), str(folder), "--format", "csv", "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2", "error"]
    by_name = {Path(row["path"]).name: row for row in rows}
    assert set(by_name) == {"broken.png", "cat_000.png", "dog_000.png", "fox_000.png", "fox_001.png"}
    assert "Cannot decode image" in by_name["broken.png"]["error"]
    assert by_name["broken.png"]["label"] == ""
    good = [row for name, row in by_name.items() if name != "broken.png"]
    assert all(row["error"] == "" and row["label"] in ("cat", "dog", "fox") for row in good)
    assert all(float(row["probability"]) >= float(row["probability_2"]) for row in good)
    assert "1 of 5 files could not be read" in captured.err


def test_json_matches_the_library(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["predict", str(run.dir / "model"), str(folder / "*.png"), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in records] == [
        "broken.png",
        "cat_000.png",
        "dog_000.png",
        "fox_000.png",
    ]
    assert records[0]["predictions"] == [] and "broken.png" in records[0]["error"]
    expected = transferkit.load(run.dir).predict([r["path"] for r in records[1:]])
    for record, prediction in zip(records[1:], expected, strict=True):
        assert record["error"] is None
        assert record["predictions"] == [
            {"label": prediction.label, "probability": pytest.approx(prediction.probability)}
        ]


def test_table_and_manifest_input(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = folder / "list.csv"
    manifest.write_text("path\ncat_000.png\nbroken.png\n")
    assert cli(["predict", str(run.dir), str(manifest)]) == 0
    out = capsys.readouterr().out
    assert (
        "cat_000.png" in out and "broken.png" in out and "error: Cannot decode image" in " ".join(out.split())
    )


def test_the_table_names_the_images_folder_once(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["predict", str(run.dir), str(folder / "cat_000.png"), str(folder / "nested")]) == 0
    out = capsys.readouterr().out
    assert f"images in {folder.resolve()}" in " ".join(out.split())
    assert "│ cat_000.png " in out and "│ nested/fox_001.png " in out


def test_no_readable_image_exits_1(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["predict", str(run.dir), str(folder / "broken.png"), str(folder / "gone.png")]) == 1
    assert "no image could be classified" in capsys.readouterr().err


def test_export_onnx_checks_the_runs_test_images_then_predict_uses_it(
    run: transferkit.Run, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["predict", str(run.dir), str(folder), "--backend", "onnx"]) == 2
    assert "transferkit export" in " ".join(capsys.readouterr().err.split())
    assert cli(["export", str(run.dir), "--quantize", "int8"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"wrote {run.dir / 'model' / 'model.onnx'}" in out
    assert "largest probability difference" in out and "on 9 test images of" in out
    assert "model.int8.onnx" in out and "test accuracy" in out
    assert cli(["predict", str(run.dir), str(folder), "--format", "json"]) == 0
    on_torch = json.loads(capsys.readouterr().out)
    assert cli(["predict", str(run.dir), str(folder), "--format", "json", "--backend", "onnx"]) == 0
    on_onnx = json.loads(capsys.readouterr().out)
    assert [r["predictions"][0]["label"] for r in on_onnx if r["predictions"]] == [
        r["predictions"][0]["label"] for r in on_torch if r["predictions"]
    ]


def test_bad_counts_are_refused_by_the_parser(run: transferkit.Run, folder: Path) -> None:
    with pytest.raises(SystemExit):
        cli(["predict", str(run.dir), str(folder), "--top-k", "0"])
