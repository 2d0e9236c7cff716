"""Earlier transferkit runs as sources: a fine-tuned model is the pretrained model of the next transfer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transferkit.config import ModelConfig
from transferkit.errors import ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone, Preprocessing, adapt_first_conv
from transferkit.models.files import read_state_dict
from transferkit.models.sources import model_sources, rebuild_network


@model_sources.register("run")
def load_run(path: str, config: ModelConfig) -> Backbone:
    """``run:RUN_DIR`` or ``run:BUNDLE_DIR``: the fine-tuned network; `fit` gives it a new head."""
    bundle = find_bundle(Path(path))
    saved = _read_config(bundle / "config.json")
    family = saved.get("family", "timm")
    architecture_config = saved.get("architecture_config")
    model = rebuild_network(family, saved["architecture"], saved["num_classes"], architecture_config)
    preprocessing = Preprocessing.from_dict(saved["preprocessing"])
    if preprocessing.channels not in (1, 3):  # exported after `Backbone.adapt_input_channels`
        adapt_first_conv(model, preprocessing.channels)
    weights = bundle / "model.safetensors"
    weights_sha256 = None
    if config.pretrained:
        weights_sha256 = checked_weights_hash(weights, saved.get("model_sha256"))
        try:
            model.load_state_dict(read_state_dict(weights))
        except RuntimeError as err:  # tensors that do not fit the architecture named in config.json
            raise ModelError(
                f"Cannot load {weights}: {err}. Export the run again, or pick another run."
            ) from err
    return Backbone(
        f"run:{path}",
        saved["architecture"],
        model,
        preprocessing,
        weights_sha256,
        family,
        architecture_config,
    )


def checked_weights_hash(weights: Path, expected: str | None) -> str:
    """The weights' SHA-256, which must match the one the bundle recorded (older bundles have none)."""
    if not weights.is_file():
        raise ModelError(f"No weights file at {weights}; export the run again.")
    digest = sha256_of_file(weights)
    if expected is not None and digest != expected:
        raise ModelError(
            f"{weights} does not match the SHA-256 in its config.json: the file was changed or damaged "
            "after export. Export the run again, or restore the file."
        )
    return digest


def find_bundle(path: Path) -> Path:
    """The bundle folder of a run directory (``RUN/model``), or `path` itself when it is a bundle."""
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise ModelError(
        f"{path} is neither a transferkit run directory nor a bundle: neither model/ nor the folder itself "
        "holds config.json and model.safetensors."
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(path.read_text())
        missing = {"architecture", "num_classes", "preprocessing"} - set(config)
    except (OSError, ValueError) as err:
        raise ModelError(f"Cannot read {path}: {err}") from err
    if missing:
        raise ModelError(f"{path} lacks {sorted(missing)}; it was not written by transferkit's export.")
    return config
