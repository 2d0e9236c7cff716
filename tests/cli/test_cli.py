import re
from pathlib import Path

import pytest
import yaml

from transferkit.cli.main import main
from transferkit.config import PRESETS


def test_print_config_shows_every_resolved_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--print-config", "--epochs", "3", "--set", "train.lr_decay=0.5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3
    assert printed["train"]["lr_decay"] == 0.5
    assert printed["model"]["name"] == "efficientnet_lite0"


def test_config_file_is_read_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  name: digits\ntrain:\n  epochs: 9\n")
    assert main(["fit", "--config", str(path), "--epochs", "2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["data"]["name"], printed["train"]["epochs"]) == ("digits", 2)


def test_a_preset_is_printed_with_its_values_and_flags_override_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fit", "--preset", "best", "--seed", "4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 4
    for key, value in PRESETS["best"].values.items():
        section, option = key.split(".")
        assert printed[section][option] == value


def test_a_resumed_run_takes_no_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--resume", str(tmp_path), "--preset", "best"]) != 0
    assert "give no other options" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--data", "elvp"], "Did you mean 'elpv'"),
        (["fit", "--model", "efficientnet_lite", "--data", "digits"], "'efficientnet_lite0'?"),
        (["fit", "--strategy", "fine-tuning"], "Did you mean 'fine-tune'"),
        (["fit", "--augment", "d8"], "Valid augmentation preset names"),
        (["fit", "--set", "train.lrr=1"], "Did you mean 'lr'"),
    ],
)
def test_bad_names_fail_fast_with_the_valid_ones(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []  # refused before any run directory was made


def test_fit_prints_the_report_path(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "fit",
        "--data",
        str(image_folder),
        "--model",
        "timm:test_efficientnet",
        "--set",
        "model.pretrained=false",
    ]
    argv += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.search(r"test split, \d+ images \(fit: \d+\.\d s\)", err)  # the metrics table's title
    report = Path(out.split("report: ")[1].split()[0])
    assert report.is_file()
    assert report.parent.parent == tmp_path


def test_models_lists_the_packaged_models_and_every_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "76.7 %", "260 px"):
        assert name in out
    for prefix in ("timm:", "hf:", "torchvision:", "file:", "run:"):
        assert prefix in out


def test_models_check_loads_a_model_as_fit_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_resnet").state_dict(), tmp_path / "w.safetensors")
    assert main(["models", "--check", f"file:{tmp_path / 'w.safetensors'}", "--arch", "test_resnet"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "timm / test_resnet" in out
    assert "feature dim │ 96" in out
    assert "weights sha256" in out and "random init" not in out


def test_models_check_reports_a_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--check", "timm:resnet_nope"]) == 2
    assert "Unknown timm architecture" in capsys.readouterr().err
