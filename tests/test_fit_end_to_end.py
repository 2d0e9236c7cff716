"""`fit` on a tiny model and a synthetic folder: every file of the run directory, with real contents."""

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import timm
import yaml
from PIL import Image
from safetensors.torch import load_file

import transferkit
from transferkit.api.outputs import view_logits_with_progress
from transferkit.config import FitConfig
from transferkit.data.source import ImageSource
from transferkit.models import resolve_model
from transferkit.testing import make_image_folder, tiny_fit_config

RUN_FILES = [
    "config.yaml",
    "manifest.json",
    "metrics.csv",
    "metrics.json",
    "predictions.csv",
    "report.md",
    "report.html",
    "checkpoints/last.ckpt",
    "checkpoints/best.ckpt",
    "model/model.safetensors",
    "model/config.json",
    "model/README.md",
    "plots/confusion_matrix.png",
    "plots/learning_curves.png",
]


@pytest.fixture(scope="module")
def run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    return transferkit.fit(tiny_fit_config(image_folder, tmp_path_factory.mktemp("runs"), epochs=2))


def test_every_file_of_the_run_directory_exists(run: transferkit.Run) -> None:
    missing = [name for name in RUN_FILES if not (run.dir / name).is_file()]
    assert missing == []


def test_metrics_are_computed_from_the_real_predictions(run: transferkit.Run) -> None:
    with open(run.dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == run.metrics["num_samples"] == 9
    accuracy = np.mean([row["true"] == row["predicted"] for row in rows])
    saved = json.loads((run.dir / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == pytest.approx(accuracy)
    assert saved["headline"]["accuracy"] == pytest.approx(run.headline["accuracy"])
    probabilities = np.array([[float(row[f"p_{c}"]) for c in ("cat", "dog", "fox")] for row in rows])
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-4)


def test_the_time_of_each_step_is_recorded_and_reported(run: transferkit.Run) -> None:
    saved = json.loads((run.dir / "metrics.json").read_text())
    timings = saved["timings_s"]
    assert {"data", "model", "decoding", "final_model", "test"} <= set(timings)
    assert "cross_validation" not in timings  # a step the run skipped is not listed
    assert all(seconds > 0 for seconds in timings.values())
    assert sum(timings.values()) <= saved["wall_time_s"]
    wall_time = next(line for line in (run.dir / "report.md").read_text().splitlines() if "wall time" in line)
    assert "final model" in wall_time and "decoding" in wall_time


def test_the_test_pass_shows_its_progress_and_chunks_change_no_logit(
    run: transferkit.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    classifier = transferkit.load(run.dir)
    size = classifier.preprocessing.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (300, 3, size, size), dtype=np.uint8)
    logits = view_logits_with_progress(classifier, pixels)  # three chunks
    assert f"test: 300 images x {len(classifier.views)} views" in capsys.readouterr().err
    assert np.allclose(logits, classifier.view_logits(pixels), rtol=0, atol=1e-6)


def test_config_yaml_writes_out_every_default(run: transferkit.Run) -> None:
    written = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert FitConfig.from_dict(written) == run.config
    assert written["train"]["strategy"] == {"name": "fine-tune", "frozen_groups": 3}  # with its options


def test_manifest_records_versions_seed_and_hashes(run: transferkit.Run) -> None:
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["seed"] == run.config.seed
    assert manifest["versions"]["torch"]
    assert len(manifest["data_sha256"]) == 64
    assert manifest["weights_sha256"] is None  # random init


def test_history_has_the_head_and_every_epoch(run: transferkit.Run) -> None:
    with open(run.dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["phase"] for row in rows] == ["head", "fine-tune", "fine-tune"]
    assert all(float(row["train_loss"]) > 0 for row in rows[1:])


def test_bundle_loads_into_a_fresh_timm_model(run: transferkit.Run) -> None:
    config = json.loads((run.dir / "model" / "config.json").read_text())
    assert config["label_names"] == ["cat", "dog", "fox"]
    assert config["preprocessing"]["input_size"] == [3, 32, 32]
    model = timm.create_model(config["architecture"], num_classes=config["num_classes"])
    model.load_state_dict(load_file(run.dir / "model" / "model.safetensors"))


def test_report_embeds_every_plot_it_links(run: transferkit.Run) -> None:
    html = (run.dir / "report.html").read_text()
    plots = sorted((run.dir / "plots").glob("*.png"))
    assert {"confusion_matrix.png", "learning_curves.png", "per_class_f1.png"} <= {p.name for p in plots}
    assert html.count("data:image/png;base64,") == len(plots)
    markdown = (run.dir / "report.md").read_text()
    assert all(f"plots/{plot.name}" in markdown for plot in plots)


def test_images_are_decoded_once_whatever_the_epochs(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    original = ImageSource.open

    def counting_open(self: ImageSource, record, resized_to=None):  # type: ignore[no-untyped-def]
        opened.append(record.path)  # from decoding threads: list.append is atomic
        return original(self, record, resized_to)

    monkeypatch.setattr(ImageSource, "open", counting_open)
    opens_per_run = []
    for epochs in (1, 3):
        opened.clear()
        config = tiny_fit_config(image_folder, tmp_path, epochs=epochs).with_overrides({"data.cache": False})
        run = transferkit.fit(config)
        test_images = {line.split(",")[0] for line in (run.dir / "predictions.csv").read_text().splitlines()}
        # Test images are opened again for the report's gallery of mistakes, which differs between runs.
        opens_per_run.append(Counter(path for path in opened if path not in test_images))
    assert opens_per_run[0] == opens_per_run[1]  # more epochs, no more decoding
    assert set(opens_per_run[0].values()) == {1}  # each train and val image: the decode pass only
    assert set(opens_per_run[0]) == {str(p) for p in image_folder.rglob("*.png")} - test_images


def test_run_directories_never_collide(tmp_path: Path) -> None:
    from transferkit.run_dir import RunPaths

    first = RunPaths.create(tmp_path, "elpv", "efficientnet_lite0")
    second = RunPaths.create(tmp_path, "elpv", "efficientnet_lite0")
    assert first.root != second.root
    assert first.plots.is_dir() and second.plots.is_dir()


def test_four_channel_images_fit_and_chain(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "bands", per_class=8)
    for path in folder.rglob("*.png"):  # a near-infrared band stored as the alpha channel
        image = Image.open(path)
        image.putalpha(Image.new("L", image.size, 90))
        image.save(path)
    config = tiny_fit_config(folder, tmp_path / "runs").with_overrides({"data.channels": 4})
    run = transferkit.fit(config)
    bundle = json.loads((run.dir / "model" / "config.json").read_text())
    assert bundle["preprocessing"]["input_size"][0] == 4
    chained = resolve_model(f"run:{run.dir}")
    assert chained.model.conv_stem.in_channels == 4


def test_elongated_images_are_squashed_whole_and_predicted_so(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "strips", per_class=8)
    for path in folder.rglob("*.png"):  # each image becomes a strip four times as wide as it is high
        image = Image.open(path)
        image.resize((image.width * 2, image.height // 2)).save(path)
    run = transferkit.fit(tiny_fit_config(folder, tmp_path / "runs"))
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())["preprocess"]
    assert (saved["crop"], saved["crop_pct"]) == ("squash", 1.0)
    assert (
        "a centre crop would keep 25% of each, so they were resized to 32 x 32 px (whole)"
        in (run.dir / "report.md").read_text()
    )
    model = transferkit.load(run.dir)
    assert (model.preprocessing.crop_mode, model.preprocessing.crop_pct) == ("squash", 1.0)
    explicit = transferkit.fit(
        tiny_fit_config(folder, tmp_path / "runs").with_overrides({"preprocess.crop": "weights"})
    )
    assert transferkit.load(explicit.dir).preprocessing.crop_mode == "center"
    assert "centre crop would keep" not in (explicit.dir / "report.md").read_text()


def test_metrics_have_intervals_calibration_and_the_tta_gain(run: transferkit.Run) -> None:
    saved = json.loads((run.dir / "metrics.json").read_text())
    test = saved["test"]
    assert set(test["intervals"]) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc"}
    low, high = test["intervals"]["accuracy"]
    assert low <= test["accuracy"] <= high
    assert test["resolution"] == pytest.approx((high - low) / 2)
    assert all("f1_interval" in row for row in test["per_class"])
    assert sum(b["count"] for b in test["calibration"]["bins"]) == test["num_samples"]
    calibration = saved["calibration"]
    assert test["temperature_scaling"] == calibration
    fitted_on = re.fullmatch(r"val \((\d+) images\)", calibration["fitted_on"])
    assert fitted_on is not None and int(fitted_on.group(1)) > 0
    assert calibration["ece_after"] == pytest.approx(test["calibration"]["ece"])
    tta = saved["tta"]
    assert test["tta"] == tta
    assert tta["views"] == ["identity", "hflip"]
    assert tta["accuracy_with"] == test["accuracy"]
    assert tta["gain"] == pytest.approx(tta["accuracy_with"] - tta["accuracy_without"])


def test_the_bundle_carries_the_temperature_fitted_on_val(run: transferkit.Run) -> None:
    saved = json.loads((run.dir / "metrics.json").read_text())
    bundle = json.loads((run.dir / "model" / "config.json").read_text())
    assert bundle["temperature"] == saved["calibration"]["temperature"]
    assert 0.05 <= bundle["temperature"] <= 20
    classifier = transferkit.load(run.dir)
    assert classifier.temperature == bundle["temperature"]
    with open(run.dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    calibrated = np.array([[float(row[f"p_{name}"]) for name in classifier.label_names] for row in rows])
    np.testing.assert_allclose(classifier.predict_proba([row["path"] for row in rows]), calibrated, atol=1e-5)


def test_the_model_card_gives_metrics_with_intervals_and_limits(run: transferkit.Run) -> None:
    card = (run.dir / "model" / "README.md").read_text()
    config = json.loads((run.dir / "model" / "config.json").read_text())
    low, high = config["metric_intervals"]["accuracy"]
    assert f"| accuracy | {run.metrics['accuracy']:.4f} | [{low:.4f}, {high:.4f}] |" in card
    assert f"Measured on {config['test_images']} held-out test images" in card
    assert "## Limits" in card
