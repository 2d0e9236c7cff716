"""Two processes on the CPU (DDP over gloo): each trains on its own shard; one run directory is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from transferkit.data.load import load_source, split_with_budget
from transferkit.testing import tiny_fit_config


def test_two_process_ddp_trains_on_shards_and_writes_one_run_directory(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_fit_config(image_folder, tmp_path / "runs").with_overrides(
        {"train.epochs": 2, "train.batch_size": 4, "runtime.devices": 2, "data.cache": False}
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config.to_yaml())
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "NODE_RANK")}
    result = subprocess.run(
        [sys.executable, "-m", "transferkit", "fit", "--config", str(config_file)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()  # the second process wrote into the first one's
    assert (run_dir / "report.md").is_file() and (run_dir / "model" / "model.safetensors").is_file()
    # each process stepped through its half of the training images, in batches of 4, each epoch
    train = len(split_with_budget(load_source(config.data), config.data).train)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2 * ((train // 2) // 4)
