"""`transferkit.load`: a fitted run's bundle predicts exactly what the run measured, from any input."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

import transferkit
from transferkit.errors import DataError, ModelError, UnknownNameError
from transferkit.evaluation.calibration import tempered_probabilities
from transferkit.export import BundleInfo, Classifier, export_model, list_image_files, save_bundle
from transferkit.export.bundle import OtherTask
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config

LABELS = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> transferkit.Run:
    # The default test-time views (the image and its mirror): the bundle records and repeats them.
    return transferkit.fit(tiny_fit_config(image_folder, tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="module")
def classifier(run: transferkit.Run) -> Classifier:
    return transferkit.load(run.dir)


@pytest.fixture(scope="module")
def test_rows(run: transferkit.Run) -> list[dict[str, str]]:
    with open(run.dir / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _copy_bundle(run: transferkit.Run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run.dir / "model", tmp_path / "bundle"))


def test_predictions_equal_the_runs_test_predictions(
    classifier: Classifier, test_rows: list[dict[str, str]]
) -> None:
    expected = np.array([[float(row[f"p_{name}"]) for name in LABELS] for row in test_rows])
    probabilities = classifier.predict_proba([row["path"] for row in test_rows], batch_size=4)
    assert probabilities.shape == (len(test_rows), 3)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    predicted = classifier.predict([row["path"] for row in test_rows])
    assert [p.label for p in predicted] == [row["predicted"] for row in test_rows]


def test_the_bundle_folder_and_its_config_describe_the_model(
    classifier: Classifier, run: transferkit.Run
) -> None:
    assert classifier.label_names == LABELS
    assert classifier.preprocessing.input_size == (3, 32, 32)
    saved = json.loads((run.dir / "model" / "config.json").read_text())
    assert classifier.temperature == saved["temperature"] > 0
    assert transferkit.load(run.dir / "model").label_names == LABELS


def _last_two_json_lines(script: str) -> tuple[Any, Any]:
    """Runs `script` in a fresh Python process; the JSON values of its last two printed lines."""
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return json.loads(output[-2]), json.loads(output[-1])


def test_a_fresh_process_predicts_the_same_without_lightning(
    classifier: Classifier, run: transferkit.Run, test_rows: list[dict[str, str]]
) -> None:
    paths = [row["path"] for row in test_rows]
    script = (
        "import json, sys, transferkit\n"
        f"model = transferkit.load({str(run.dir)!r})\n"
        f"print(json.dumps(model.predict_proba({paths!r}).tolist()))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning'))))\n"
    )
    probabilities, modules = _last_two_json_lines(script)
    np.testing.assert_allclose(np.array(probabilities), classifier.predict_proba(paths), atol=1e-6)
    assert modules == []


def test_the_cli_predicts_with_an_exported_model_importing_no_torch(
    classifier: Classifier, run: transferkit.Run, test_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """`transferkit predict` on a bundle with a current model.onnx, on a machine without a GPU, runs
    onnxruntime on numpy arrays: torch, timm, torchvision and scipy (seconds to import) stay out."""
    bundle = _copy_bundle(run, tmp_path)
    export_model(bundle)
    paths = [row["path"] for row in test_rows]
    script = (
        "import contextlib, io, json, sys\n"
        "from transferkit.cli.main import main\n"
        "from transferkit.export import predictor\n"
        "predictor._gpu_possible = lambda: False  # as on a machine without one, wherever this runs\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    main(['predict', {str(bundle)!r}, *{paths!r}, '--format', 'csv'])\n"
        "print(json.dumps(out.getvalue()))\n"
        "print(json.dumps(sorted({'torch', 'timm', 'torchvision', 'scipy'} & set(sys.modules))))\n"
    )
    printed, modules = _last_two_json_lines(script)
    assert modules == []
    rows = list(csv.DictReader(io.StringIO(printed)))
    assert [row["path"] for row in rows] == paths
    expected = classifier.predict_proba(paths)
    assert [row["label"] for row in rows] == [LABELS[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose([float(row["probability"]) for row in rows], expected.max(axis=1), atol=1e-4)


def test_an_explicit_device_decides_without_asking_torch() -> None:
    from transferkit.export.predictor import _on_cpu

    assert _on_cpu("cpu") and not _on_cpu("cuda:1") and not _on_cpu("mps")


def test_paths_pil_images_and_arrays_agree(classifier: Classifier, test_rows: list[dict[str, str]]) -> None:
    paths = [row["path"] for row in test_rows[:3]]
    pil_images = [Image.open(path) for path in paths]
    arrays = [np.asarray(Image.open(path)) for path in paths]
    from_paths = classifier.predict_proba(paths)
    np.testing.assert_allclose(classifier.predict_proba(pil_images), from_paths, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(arrays), from_paths, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(np.stack(arrays)), from_paths, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(Path(paths[0])), from_paths[:1], atol=1e-6)


def test_grayscale_arrays_become_equal_channels(classifier: Classifier) -> None:
    gray = np.random.default_rng(0).integers(0, 256, (45, 37), dtype=np.uint8)
    expected = classifier.predict_proba(np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_allclose(classifier.predict_proba(gray), expected, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(gray[..., None]), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "H x W x C with C = 1, 3 or 4"),
        (42, "Cannot predict on a int"),
    ],
)
def test_unusable_inputs_are_explained(classifier: Classifier, image: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        classifier.predict_proba([image])  # type: ignore[list-item]


def test_top_k_lists_labels_by_probability(classifier: Classifier, test_rows: list[dict[str, str]]) -> None:
    paths = [row["path"] for row in test_rows[:4]]
    probabilities = classifier.predict_proba(paths)
    for prediction, row in zip(classifier.predict(paths, top_k=2), probabilities, strict=True):
        order = np.argsort(-row)[:2]
        assert prediction.labels == tuple(LABELS[i] for i in order)
        assert prediction.probabilities == pytest.approx(row[order])
        assert prediction.label == prediction.labels[0]
    assert len(classifier.predict(paths[:1], top_k=10)[0].labels) == 3


def test_unreadable_files_are_reported_and_the_rest_predicted(
    classifier: Classifier, test_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = [test_rows[0]["path"], str(broken), str(tmp_path / "missing.jpg"), test_rows[1]["path"]]
    results = classifier.predict_files(paths, batch_size=1)
    assert [result.path for result in results] == paths
    assert [result.error is None for result in results] == [True, False, False, True]
    assert "broken.png" in (results[1].error or "")
    assert results[0].prediction == classifier.predict(paths[0])[0]


def test_image_files_are_listed_from_folders_globs_and_manifests(image_folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "unlabeled.csv"
    manifest.write_text(f"path\n{image_folder}/cat/cat_000.png\ndog/x.png\n")
    files = list_image_files(
        [image_folder / "fox", f"{image_folder}/dog/dog_00[12].png", manifest, "nope/*.png"]
    )
    assert files[:12] == sorted(str(p) for p in (image_folder / "fox").glob("*.png"))
    assert [Path(f).name for f in files[12:]] == [
        "dog_001.png",
        "dog_002.png",
        "cat_000.png",
        "x.png",
        "*.png",
    ]
    assert files[15] == str(tmp_path / "dog" / "x.png")  # relative to the manifest's folder


def test_temperature_from_the_config_scales_the_logits(
    classifier: Classifier, run: transferkit.Run, test_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    bundle = _copy_bundle(run, tmp_path)
    config = json.loads((bundle / "config.json").read_text())
    one_view = {**config, "test_time_views": ["identity"]}  # the temperature alone
    (bundle / "config.json").write_text(json.dumps({**one_view, "temperature": 2.5}))
    calibrated = transferkit.load(bundle)
    assert calibrated.temperature == 2.5
    paths = [row["path"] for row in test_rows[:3]]
    assert calibrated.network is not None
    logits = calibrated.network(torch.from_numpy(classifier.preprocess(paths)))
    expected = (logits / 2.5).softmax(1).detach().numpy()
    np.testing.assert_allclose(calibrated.predict_proba(paths), expected, atol=1e-6)
    (bundle / "config.json").write_text(json.dumps({**config, "temperature": -1}))
    with pytest.raises(ModelError, match="temperature must be a positive number"):
        transferkit.load(bundle)


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "one tensor byte", "other model"])
def test_damaged_weights_are_a_clear_error(run: transferkit.Run, tmp_path: Path, damage: str) -> None:
    bundle = _copy_bundle(run, tmp_path)
    weights = bundle / "model.safetensors"
    content = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(content[: len(content) // 2])
    elif damage == "garbage header":
        weights.write_bytes(b"\xff" * 64 + content[64:])
    elif damage == "one tensor byte":
        weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # loads fine, wrong weights
    else:
        other = resolve_model("timm:test_efficientnet", pretrained=False)
        other.reset_head(5)
        save_bundle(other, BundleInfo(list("abcde"), {}, "x"), tmp_path / "other")
        shutil.copy(tmp_path / "other" / "model.safetensors", weights)
    with pytest.raises(ModelError, match=r"does not match the SHA-256 in its config\.json"):
        transferkit.load(bundle)
    config = json.loads((bundle / "config.json").read_text())
    del config["model_sha256"]  # a bundle without the hash still refuses weights that do not load
    (bundle / "config.json").write_text(json.dumps(config))
    if damage != "one tensor byte":
        with pytest.raises(ModelError, match="Cannot load"):
            transferkit.load(bundle)


def test_other_labels_come_from_their_heads_in_the_same_pass_and_their_file_is_checked(
    run: transferkit.Run, classifier: Classifier, test_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    backbone = resolve_model(f"run:{run.dir}")
    task = backbone.head()
    assert isinstance(task, nn.Linear)
    # a head that repeats the task head's first two rows: its logits are the task's first two
    head = nn.Linear(task.in_features, 2)
    head.load_state_dict({"weight": task.weight[:2], "bias": task.bias[:2]})
    info = BundleInfo(LABELS, {}, "x", test_time_views=tuple(view.__name__ for view in classifier.views))
    other = OtherTask("pair", ["cat?", "dog?"], [head], temperature=2.0)
    bundle = save_bundle(backbone, info, tmp_path / "bundle", other_tasks=[other])
    paths = [row["path"] for row in test_rows]

    results = transferkit.load(bundle, backend="torch").predict_files(paths, top_k=2)
    expected = tempered_probabilities(classifier.view_logits(classifier.preprocess(paths))[..., :2], 2.0)
    pairs = [r.other_labels["pair"] for r in results]
    by_name = [dict(zip(pair.labels, pair.probabilities, strict=True)) for pair in pairs]
    found = np.array([[probabilities[name] for name in other.label_names] for probabilities in by_name])
    np.testing.assert_allclose(found, expected, atol=1e-5)
    assert [pair.label for pair in pairs] == [other.label_names[i] for i in expected.argmax(1)]

    narrow = OtherTask("pair", ["cat?", "dog?"], [nn.Linear(task.in_features - 1, 2)])
    save_bundle(backbone, info, tmp_path / "narrow", other_tasks=[narrow])
    with pytest.raises(ModelError, match=rf"maps {task.in_features - 1} features .* has {task.in_features}"):
        transferkit.load(tmp_path / "narrow", backend="torch")

    weights = bundle / "tasks.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        transferkit.load(bundle, backend="torch")
    weights.unlink()
    with pytest.raises(ModelError, match=r"No weights file at .*tasks\.safetensors"):
        transferkit.load(bundle, backend="torch")


def test_the_bundle_repeats_the_runs_test_time_views(run: transferkit.Run, classifier: Classifier) -> None:
    config = json.loads((run.dir / "model" / "config.json").read_text())
    assert config["test_time_views"] == ["identity", "hflip"]
    assert [view.__name__ for view in classifier.views] == ["identity", "hflip"]


def test_a_folder_without_a_bundle_and_a_bad_backend_are_explained(
    run: transferkit.Run, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="neither a transferkit run directory nor a bundle"):
        transferkit.load(tmp_path)
    with pytest.raises(UnknownNameError, match="Valid backend names: auto, onnx, torch"):
        transferkit.load(run.dir, backend="tensorrt")
    with pytest.raises(ModelError, match=r"transferkit export .* --format onnx"):
        transferkit.load(run.dir, backend="onnx")


def test_timm_loads_the_bundle_as_a_local_dir(classifier: Classifier, run: transferkit.Run) -> None:
    model = timm.create_model(f"local-dir:{run.dir / 'model'}", pretrained=True).eval()
    assert model.num_classes == 3
    assert model.pretrained_cfg["label_names"] == LABELS
    data_config = timm.data.resolve_model_data_config(model)
    assert tuple(data_config["input_size"]) == classifier.preprocessing.input_size
    assert data_config["crop_pct"] == classifier.preprocessing.crop_pct
    images = torch.randn(2, 3, 32, 32)
    assert classifier.network is not None
    with torch.inference_mode():
        torch.testing.assert_close(model(images), classifier.network.model(images))


def test_four_band_bundles_load_in_transferkit_and_timm(tmp_path: Path) -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(2)
    backbone.adapt_input_channels(4)
    backbone.preprocessing = backbone.preprocessing.resized(32)
    bundle = save_bundle(backbone, BundleInfo(["dry", "wet"], {}, "bands"), tmp_path / "bundle")
    classifier = transferkit.load(bundle)
    rgba = np.random.default_rng(1).integers(0, 256, (40, 40, 4), dtype=np.uint8)
    assert classifier.predict_proba(rgba).shape == (1, 2)
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    assert model.conv_stem.in_channels == 4
    pixels = torch.from_numpy(classifier.preprocess([rgba]))
    assert classifier.network is not None
    with torch.inference_mode():
        torch.testing.assert_close(model(classifier.network.normalize(pixels)), classifier.network(pixels))
