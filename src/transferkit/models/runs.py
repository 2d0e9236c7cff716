"""Earlier transferkit runs as sources: a fine-tuned model is the pretrained model of the next transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from transferkit.config import ModelConfig
from transferkit.errors import ModelError
from transferkit.files import sha256_of_file
from transferkit.models.backbone import Backbone, adapt_first_conv
from transferkit.models.ensemble import Ensemble
from transferkit.models.files import read_state_dict
from transferkit.models.ordinal import install_ordinal_head
from transferkit.models.saved import find_bundle, read_saved_config, saved_ancestry, saved_preprocessing
from transferkit.models.sources import model_sources, rebuild_network
from transferkit.models.task_heads import heads_from_tensors

OTHER_HEADS_FILE = "tasks.safetensors"  # the other labels' heads of a bundle (`models.task_heads`)


@model_sources.register("run")
def load_run(path: str, config: ModelConfig) -> Backbone:
    """``run:RUN_DIR`` or ``run:BUNDLE_DIR``: the fine-tuned network; `fit` gives it a new head."""
    bundle = find_bundle(Path(path))
    saved = read_saved_config(bundle / "config.json")
    family = saved.get("family", "timm")
    architecture_config = saved.get("architecture_config")
    preprocessing = saved_preprocessing(saved, bundle / "config.json")
    weights = bundle / "model.safetensors"
    # Damaged or swapped weights are refused before any network is built.
    weights_sha256 = checked_weights_hash(weights, saved.get("model_sha256")) if config.pretrained else None
    model = rebuild(saved, preprocessing.channels)
    if config.pretrained:
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
        saved_ancestry(saved),
    )


def rebuild(saved: dict[str, Any], channels: int) -> nn.Module:
    """The untrained network a bundle's config.json describes: one, or an ensemble of several."""
    members = [
        rebuild_network(
            saved.get("family", "timm"),
            saved["architecture"],
            saved["num_classes"],
            saved.get("architecture_config"),
        )
        for _ in range(saved.get("ensemble_members") or 1)
    ]
    for member in members:
        if channels not in (1, 3):  # exported after `Backbone.adapt_input_channels`
            adapt_first_conv(member, channels)
        if saved.get("task") == "ordinal":
            install_ordinal_head(member)
    return Ensemble(members) if "ensemble_members" in saved else members[0]


def read_other_heads(bundle: Path, saved: dict[str, Any], num_features: int) -> list[list[nn.Linear]]:
    """The linear heads of the other labels a bundle predicts (config.json's ``other_tasks``; per label,
    one per network of an ensemble), checked against the hash its config recorded and against the
    network's `num_features`; none for a bundle of one label."""
    tasks = saved.get("other_tasks") or []
    if not tasks:
        return []
    path = bundle / OTHER_HEADS_FILE
    checked_weights_hash(path, saved.get("other_tasks_sha256"))
    try:
        others = heads_from_tensors(read_state_dict(path), len(tasks), saved.get("ensemble_members") or 1)
    except (KeyError, RuntimeError) as err:  # a missing head, or tensors that are not a linear layer's
        message = f"Cannot read the other labels' heads in {path}: {err}"
        raise ModelError(f"{message}. Export the run again.") from err
    for heads, task in zip(others, tasks, strict=True):
        wrong = [
            h for h in heads if (h.in_features, h.out_features) != (num_features, len(task["label_names"]))
        ]
        if wrong:
            head = wrong[0]
            raise ModelError(
                f"{path}: the head of {task['name']} maps {head.in_features} features to "
                f"{head.out_features} outputs; the network has {num_features} features and the label "
                f"{len(task['label_names'])} classes. Export the run again."
            )
    return others


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
