"""The model bundle: weights as safetensors plus a config.json holding everything needed to use them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save

from transferkit.files import write_atomic
from transferkit.models.backbone import Backbone

BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle says about its model, besides the weights."""

    class_names: list[str]
    metrics: dict[str, float]
    data: str


def save_bundle(backbone: Backbone, info: BundleInfo, directory: Path) -> Path:
    """Writes `model.safetensors`, `config.json` and a `README.md` model card; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    write_atomic(directory / "model.safetensors", save(state))
    config = bundle_config(backbone, info)
    write_atomic(directory / "config.json", json.dumps(config, indent=2).encode())
    write_atomic(directory / "README.md", model_card(config).encode())
    return directory


def bundle_config(backbone: Backbone, info: BundleInfo) -> dict[str, Any]:
    preprocessing = backbone.preprocessing.to_dict()
    preprocessing["input_size"] = list(preprocessing["input_size"])
    preprocessing["resize"] = "shorter side to input_size / crop_pct, then the centre input_size crop"
    return {
        "format": BUNDLE_FORMAT,
        "family": backbone.family,
        "architecture": backbone.architecture,
        "architecture_config": backbone.architecture_config,
        "num_classes": len(info.class_names),
        "label_names": info.class_names,
        "preprocessing": preprocessing,
        "source_model": {"spec": backbone.spec, "weights_sha256": backbone.weights_sha256},
        "data": info.data,
        "metrics": info.metrics,
    }


def model_card(config: dict[str, Any]) -> str:
    metrics = "\n".join(f"| {name} | {value:.4f} |" for name, value in config["metrics"].items())
    prep = config["preprocessing"]
    return f"""# {config["architecture"]} fine-tuned on {config["data"]}

Fine-tuned with transferkit from `{config["source_model"]["spec"]}`.

## Intended use
Classifies images into: {", ".join(config["label_names"])}. Use it on images like the training data;
it has not been evaluated on anything else.

## Input
{prep["input_size"][1]} x {prep["input_size"][2]} px: {prep["interpolation"]} resize of the shorter side to
input size / {prep["crop_pct"]}, centre crop; mean {prep["mean"]}, std {prep["std"]}.

## Test metrics
| metric | value |
| --- | --- |
{metrics}

## Files
`model.safetensors` (weights, no pickle) and `config.json` (labels, preprocessing, provenance).
"""
