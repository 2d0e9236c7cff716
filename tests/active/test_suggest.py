"""`suggest` end to end on a tiny fitted run, and the manifests it and `label` write."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import transferkit
from transferkit.active import suggest
from transferkit.active.labels import LabelFile, LabellingSession
from transferkit.cli.main import main
from transferkit.data.manifest import load_manifest
from transferkit.data.unlabeled import load_unlabeled
from transferkit.errors import ConfigError
from transferkit.testing import make_image_folder, tiny_fit_config


@pytest.fixture(scope="module")
def run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    """A run fitted on the labels.csv a labelling session wrote: what `fit --data labels.csv` does next."""
    root = tmp_path_factory.mktemp("labelled")
    images = [str(path) for path in sorted(image_folder.rglob("*.png"))]
    session = LabellingSession(images, ["cat", "dog", "fox"], LabelFile(root / "labels.csv"))
    for index, path in enumerate(images):
        session.label(index, Path(path).parent.name)
    return transferkit.fit(tiny_fit_config(root / "labels.csv", root / "runs"))


@pytest.fixture(scope="module")
def pool(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New images of the three classes, plus a copy of a training image and a re-encoded near copy."""
    root = tmp_path_factory.mktemp("pool")
    make_image_folder(root / "new", per_class=6, seed=7)
    trained = sorted((image_folder / "cat").glob("*.png"))[0]
    shutil.copy(trained, root / "copy_of_train.png")
    with Image.open(sorted((image_folder / "dog").glob("*.png"))[0]) as image:
        image.convert("RGB").save(root / "near_copy.jpg", quality=97)
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_suggest_picks_new_images_never_copies_of_labelled_ones(
    run: transferkit.Run, pool: Path, tmp_path: Path
) -> None:
    out = tmp_path / "to_label.csv"
    result = suggest(run.dir, pool=pool, budget=19, method="margin", out=out)
    new = {str(path) for path in (pool / "new").rglob("*.png")}
    assert len(result.picks) == 18, "every new image, and nothing else: the pool has 18 new ones"
    assert set(result.paths) == new
    reasons = {Path(item.path).name: item.reason for item in result.excluded}
    assert "copy_of_train.png" in reasons and "copy of" in reasons["copy_of_train.png"]
    assert "near_copy.jpg" in reasons and "copy of" in reasons["near_copy.jpg"]
    assert reasons["broken.png"].startswith("unreadable")
    scores = [pick.score for pick in result.picks]
    assert all(0 <= score <= 1 for score in scores)
    assert all(pick.predicted in ("cat", "dog", "fox") for pick in result.picks)
    assert all(Path(pick.nearest_labelled).is_file() and pick.distance >= 0 for pick in result.picks)


def test_the_manifest_lists_picks_with_reasons_and_reads_back(
    run: transferkit.Run, pool: Path, tmp_path: Path
) -> None:
    out = tmp_path / "round1" / "to_label.csv"
    result = suggest(run.dir, pool=pool, budget=5, method="badge", out=out, seed=1)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert {row["method"] for row in rows} == {"badge"}
    assert all(row["score"] and row["predicted"] and row["nearest_labelled"] for row in rows)
    assert all((out.parent / row["nearest_labelled"]).is_file() for row in rows)  # read as its paths are
    # The pool reader (`label`, `predict`, `fit --unlabeled`) gets the same files back, in rank order.
    assert load_unlabeled(str(out)) == [str(Path(path).absolute()) for path in result.paths]


def test_cold_start_without_a_run_picks_representative_images(
    run: transferkit.Run, pool: Path, tmp_path: Path
) -> None:
    # A fitted run's network is a pretrained model like any other (the packaged ones are slow to test).
    result = suggest(pool=pool / "new", budget=3, model=str(run.dir), out=tmp_path / "cold.csv")
    assert result.method == "typiclust" and len(result.picks) == 3
    assert all(pick.predicted == "" and pick.nearest_labelled == "" for pick in result.picks)
    with pytest.raises(ConfigError, match="typiclust"):
        suggest(pool=pool / "new", budget=3, method="margin", model=str(run.dir))


def test_a_run_and_a_model_together_are_refused(run: transferkit.Run, pool: Path) -> None:
    with pytest.raises(ConfigError, match="Drop --model"):
        suggest(run.dir, pool=pool, budget=3, model="efficientnet_lite0")


def test_labelled_manifests_are_left_out_of_the_pool(
    run: transferkit.Run, pool: Path, tmp_path: Path
) -> None:
    """Cold start, second round: the images of labels.csv (and their copies) are not suggested again."""
    images = sorted(str(path) for path in (pool / "new").rglob("*.png"))
    store = LabelFile(tmp_path / "labels.csv")
    for path in images[:10]:
        store.set(path, "cat")
    result = suggest(
        pool=pool / "new",
        budget=20,
        method="coreset",
        model=str(run.dir),
        labelled=[str(tmp_path / "labels.csv")],
    )
    assert set(result.paths) == set(images[10:])
    assert {Path(item.path).name for item in result.excluded} == {Path(p).name for p in images[:10]}
    assert all(
        Path(pick.nearest_labelled).name in {Path(p).name for p in images[:10]} for pick in result.picks
    )


def test_labels_written_by_a_session_are_the_runs_dataset(run: transferkit.Run, image_folder: Path) -> None:
    source = load_manifest(run.config.data.name)
    assert source.class_names == ["cat", "dog", "fox"]
    expected = {str(path): path.parent.name for path in image_folder.rglob("*.png")}
    assert {record.path: source.class_names[record.label] for record in source.records} == expected
    assert (run.dir / "model" / "model.safetensors").is_file()


def test_cli_suggest_writes_the_manifest(
    run: transferkit.Run, pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "picked.csv"
    code = main(["suggest", str(run.dir), "--pool", str(pool), "--budget", "4", "--out", str(out)])
    assert code == 0
    picked = load_unlabeled(str(out))
    assert len(picked) == 4
    # the table shows each pick from the pool's folder, which it names once below
    shown = capsys.readouterr().out
    folder = os.path.commonpath([os.path.dirname(path) for path in picked])
    assert f"images in {folder}" in shown
    assert f" {os.path.relpath(picked[0], folder)} " in shown
    assert main(["suggest", "--pool", str(pool), "--method", "entropy", "--out", str(out)]) == 2


def test_labelling_session_undo_skip_and_resume(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "imgs", classes=("cat", "dog"), per_class=3)
    images = [str(path) for path in sorted(folder.rglob("*.png"))]
    out = tmp_path / "labels.csv"
    session = LabellingSession(images, ["cat", "dog"], LabelFile(out))
    session.label(0, "cat")
    session.skip(1)
    session.label(2, "dog")
    assert session.current() == 3
    assert session.undo() == 2 and session.current() == 2
    assert session.undo() == 1 and session.current() == 1, "undoing a skip shows the image again"
    with pytest.raises(ConfigError, match="cat, dog"):
        session.label(1, "bird")
    again = LabellingSession(images, ["cat", "dog"], LabelFile(out))  # a restart reads the file
    assert again.current() == 1 and again.counts()["labelled"] == 1
    assert again.undo() == 0, "after a restart, undo takes back the file's last label of these images"
    assert out.read_text() == "path,label\n" and not again.can_undo()


def test_suggest_is_part_of_the_public_api() -> None:
    assert transferkit.suggest is suggest
    assert "suggest" in transferkit.__all__


def test_cli_label_without_classes_says_how_to_name_them(
    pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", str(pool / "new"), "--out", str(tmp_path / "labels.csv")]) == 2
    assert "--classes" in capsys.readouterr().err


def test_the_cli_module_imports_nothing_heavy() -> None:
    """`transferkit --help` must stay fast: torch, numpy and FastAPI load only when a command runs."""
    heavy = "('torch', 'numpy', 'fastapi')"
    code = f"import sys, transferkit.cli.active; print([n for n in {heavy} if n in sys.modules])"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
