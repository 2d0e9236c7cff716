"""A run stopped for real (SIGKILL, SIGTERM, SIGINT) and resumed ends with an uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transferkit import FitConfig
from transferkit.faults import KILL_AT, KILL_SIGNAL
from transferkit.testing import tiny_fit_config

# 24 train images in batches of 4: 6 steps per epoch, 3 epochs; a checkpoint after every step.
OVERRIDES = {
    "train.epochs": 3,
    "train.batch_size": 4,
    "runtime.deterministic": True,
    "runtime.checkpoint_every": 1,
    "train.ema": True,
    "preprocess.augment": "light",
    "data.cache": False,
}


def _fit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "transferkit", "fit", *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    (run_dir,) = out.iterdir()
    return load_file(run_dir / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def config_file(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    config = tiny_fit_config(image_folder, folder / "unused").with_overrides(OVERRIDES)
    path = folder / "config.yaml"
    path.write_text(config.to_yaml())
    return path


@pytest.fixture(scope="module")
def uninterrupted(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _fit("--config", str(config_file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return _weights(out)


def _assert_same_weights(out: Path, expected: dict[str, torch.Tensor]) -> None:
    weights = _weights(out)
    assert weights.keys() == expected.keys()
    different = [name for name in weights if not torch.equal(weights[name], expected[name])]
    assert not different, f"{len(different)} tensors differ after resuming, e.g. {different[:3]}"


# (kill point, signal, exit code) for one run interrupted again after each resume
INTERRUPTIONS = [
    ("step:3", "INT", 128 + signal.SIGINT),  # Ctrl-C mid-epoch: a checkpoint, then a clean exit
    ("step:8", "KILL", -signal.SIGKILL),  # kill -9 mid-epoch 2, before that step's checkpoint
    ("step:10", "TERM", 128 + signal.SIGTERM),  # SIGTERM, as a cluster scheduler sends it
    ("evaluation", "KILL", -signal.SIGKILL),  # training done, evaluation under way
]


def test_a_run_interrupted_again_and_again_resumes_to_the_same_weights(
    config_file: Path, uninterrupted: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    first = INTERRUPTIONS[0]
    killed = _fit(
        "--config", str(config_file), "--out", str(tmp_path), env={KILL_AT: first[0], KILL_SIGNAL: first[1]}
    )
    (run_dir,) = tmp_path.iterdir()
    for point, signal_name, exit_code in INTERRUPTIONS:
        assert killed.returncode == exit_code, (point, killed.stderr)
        if signal_name != "KILL":
            assert f"--resume {run_dir}" in killed.stderr
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert not (run_dir / "report.md").exists()
        following = INTERRUPTIONS.index((point, signal_name, exit_code)) + 1
        if following < len(INTERRUPTIONS):
            point, signal_name, _ = INTERRUPTIONS[following]
            killed = _fit("--resume", str(run_dir), env={KILL_AT: point, KILL_SIGNAL: signal_name})
    resumed = _fit("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(tmp_path, uninterrupted)


def test_a_kill_while_a_checkpoint_is_written_keeps_the_previous_one(
    config_file: Path, uninterrupted: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    killed = _fit("--config", str(config_file), "--out", str(tmp_path), env={KILL_AT: "step:4"})
    (run_dir,) = tmp_path.iterdir()
    previous = (run_dir / "checkpoints" / "last.ckpt").read_bytes()  # written after step 3
    killed = _fit("--resume", str(run_dir), env={KILL_AT: "write:last.ckpt"})  # step 4's, half done
    assert killed.returncode == -signal.SIGKILL
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == previous
    assert _fit("--resume", str(run_dir)).returncode == 0
    _assert_same_weights(tmp_path, uninterrupted)


def test_a_finished_run_is_not_resumed(tmp_path: Path) -> None:
    import transferkit
    from transferkit.errors import RunError

    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "report.md").write_text("done")
    with pytest.raises(RunError, match="finished already"):
        transferkit.fit(resume=tmp_path)
    with pytest.raises(RunError, match=r"no config\.yaml"):
        transferkit.fit(resume=tmp_path / "elsewhere")


def _reference_weights(config_file: Path, tmp_path: Path, flags: list[str]) -> dict[str, torch.Tensor]:
    """The weights of the same run, uninterrupted."""
    out = tmp_path / "reference"
    assert _fit("--config", str(config_file), "--out", str(out), *flags).returncode == 0
    return _weights(out)


def test_a_pseudo_label_run_resumes_on_the_same_pseudo_labels(config_file: Path, tmp_path: Path) -> None:
    semi = ["--labels-per-class", "5", "--semi", "pseudo-label", "--set", "train.semi.threshold=0.34"]
    reference = _reference_weights(config_file, tmp_path, semi)
    interrupted = tmp_path / "interrupted"
    killed = _fit(
        "--config", str(config_file), "--out", str(interrupted), *semi, env={KILL_AT: "pseudo-labels"}
    )
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = interrupted.iterdir()
    assert (run_dir / "pseudo_labels.json").is_file()  # the selection, saved before training began
    # between the head and the epoch loop: nothing to resume from yet but the saved pseudo-labels
    assert _fit("--resume", str(run_dir), env={KILL_AT: "after-head"}).returncode == -signal.SIGKILL
    assert _fit("--resume", str(run_dir)).returncode == 0
    _assert_same_weights(interrupted, reference)


def test_a_flexmatch_run_resumes_with_the_classes_it_had_learned(config_file: Path, tmp_path: Path) -> None:
    """FlexMatch's thresholds follow every pool image's latest confident class: the checkpoint keeps them."""
    semi = ["--labels-per-class", "5", "--semi", "flexmatch", "--set", "train.semi.threshold=0.4"]
    reference = _reference_weights(config_file, tmp_path, semi)
    interrupted = tmp_path / "interrupted"
    killed = _fit("--config", str(config_file), "--out", str(interrupted), *semi, env={KILL_AT: "step:5"})
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = interrupted.iterdir()
    learned = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["semi"]["learned"]
    assert (learned >= 0).any()  # the pool had confident predictions before the kill
    assert _fit("--resume", str(run_dir)).returncode == 0
    _assert_same_weights(interrupted, reference)


def test_a_self_training_run_resumes_its_teacher_and_its_student(config_file: Path, tmp_path: Path) -> None:
    semi = ["--labels-per-class", "5", "--semi", "self-training", "--set", "train.semi.threshold=0.34"]
    reference = _reference_weights(config_file, tmp_path, semi)
    interrupted = tmp_path / "interrupted"
    run = ["--config", str(config_file), "--out", str(interrupted), *semi]
    assert _fit(*run, env={KILL_AT: "step:3"}).returncode == -signal.SIGKILL  # the teacher, mid-training
    (run_dir,) = interrupted.iterdir()
    assert _fit("--resume", str(run_dir), env={KILL_AT: "teacher"}).returncode == -signal.SIGKILL
    assert (run_dir / "teacher" / "checkpoints" / "trained.pt").is_file()
    # the teacher is done: the next step 3 is the student's
    assert _fit("--resume", str(run_dir), env={KILL_AT: "step:3"}).returncode == -signal.SIGKILL
    assert (run_dir / "pseudo_labels.json").is_file()
    assert _fit("--resume", str(run_dir)).returncode == 0
    _assert_same_weights(interrupted, reference)


def test_a_run_directory_in_use_refuses_a_second_process(tmp_path: Path) -> None:
    import transferkit
    from transferkit.errors import RunError
    from transferkit.run_dir import RunPaths

    paths = RunPaths.at(tmp_path / "run")
    (paths.root / "config.yaml").write_text("seed: 0\n")
    # flock: a second open of the lock file is refused, in this process or another
    with paths.lock(), pytest.raises(RunError, match="in use by another transferkit process"):
        transferkit.fit(resume=paths.root)
    with pytest.raises(RunError, match="exists already"):
        RunPaths.at(paths.root)


# The default path: the packaged Lite0 with its ImageNet weights, BatchNorm statistics frozen, the default
# fine-tune strategy (a head first, then the top layer groups), ELPV's d4 augmentation and test-time views.
# 48 ELPV cells at 48 px (small, to keep three runs short): 32 train images in batches of 8, 4 steps per
# epoch, 2 epochs.
DEFAULT_PATH_OVERRIDES = {
    "data.subset": 48,
    "data.cache": False,
    "preprocess.image_size": 48,
    "train.epochs": 2,
    "train.batch_size": 8,
    "runtime.deterministic": True,
    "runtime.checkpoint_every": 2,
}


@pytest.mark.slow
def test_the_default_path_resumes_to_the_same_weights(tmp_path: Path) -> None:
    config = FitConfig().with_overrides(DEFAULT_PATH_OVERRIDES)
    assert (config.model.name, config.model.pretrained, config.train.batchnorm) == (
        "efficientnet_lite0",
        True,
        "frozen",
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config.to_yaml())
    reference = tmp_path / "uninterrupted"
    result = _fit("--config", str(config_file), "--out", str(reference))
    assert result.returncode == 0, result.stderr
    interrupted = tmp_path / "interrupted"
    # kill -9 mid-epoch 2, before step 7's checkpoint: the resume starts from step 6's
    killed = _fit("--config", str(config_file), "--out", str(interrupted), env={KILL_AT: "step:7"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir,) = interrupted.iterdir()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "report.md").exists()
    # A restart from scratch would end with the same weights too; a kill point at step 6 tells them apart:
    # the resumed run starts after it, while a restart (or a resume from epoch 1's end) passes it.
    resumed = _fit("--resume", str(run_dir), env={KILL_AT: "step:6"})
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(interrupted, _weights(reference))
