"""The model bundle: weights as safetensors plus a config.json holding everything needed to use them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import save
from torch import nn

from transferkit.evaluation.operating_point import OperatingPoint
from transferkit.export.onnx_runtime import ONNX_FILE, WEIGHTS_KEY, onnx_metadata, with_metadata
from transferkit.files import write_folder_atomic
from transferkit.models.backbone import Backbone
from transferkit.models.ensemble import Ensemble, networks
from transferkit.models.ordinal import is_ordinal
from transferkit.models.runs import OTHER_HEADS_FILE
from transferkit.models.task_heads import head_tensors

BUNDLE_FORMAT = 1
# The source's pretrained_cfg keys kept for timm's `create_model("local-dir:DIR")` besides the
# preprocessing: where the stem and the classifier are, whether other input sizes work, the licence.
_TIMM_CFG_KEYS = ("first_conv", "classifier", "fixed_input_size", "license")


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle says about its model, besides the weights."""

    class_names: list[str]
    metrics: dict[str, float]
    data: str
    test_time_views: tuple[str, ...] = ("identity",)  # averaged at test time, and by `predict`
    data_channels: int | None = None  # channels images are decoded to (1: grayscale); None: the model's
    temperature: float = 1.0  # probabilities are softmax(logits / temperature), fitted on the val split
    intervals: dict[str, list[float] | None] = field(default_factory=dict)  # 95 % bootstrap, per metric
    test_images: int = 0  # how many images the metrics were measured on
    operating_point: OperatingPoint | None = None  # a class predicted by its threshold (a recall target)


@dataclass(frozen=True)
class OtherTask:
    """Another label of the same images, predicted by the bundle's network through a linear head of its
    own on the pooled features (`models.task_heads`)."""

    name: str
    label_names: list[str]
    heads: Sequence[nn.Linear]  # one per network: one, or one per member of an ensemble
    temperature: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)  # on the test images that carry the label

    def to_dict(self) -> dict[str, Any]:
        """What config.json records of it (the head goes into tasks.safetensors)."""
        return {
            "name": self.name,
            "label_names": self.label_names,
            "temperature": self.temperature,
            "metrics": self.metrics,
        }


def save_bundle(
    backbone: Backbone,
    info: BundleInfo,
    directory: Path,
    onnx: bytes | None = None,
    other_tasks: Sequence[OtherTask] = (),
) -> Path:
    """Writes `model.safetensors`, `config.json` and a `README.md` model card; returns the directory.

    `onnx`, the translation of this `backbone`'s network that ran the run's test predictions once it
    matched PyTorch (`Classifier.translation`), becomes `model.onnx`, stamped with the hash of the weights
    written here so that `load(backend="auto")` runs it (the onnx package writes the stamp; without it no
    model.onnx is written). Without `onnx`, a model.onnx left in `directory` by an earlier save is
    removed. `other_tasks`, heads for other labels on the same features, go into tasks.safetensors:
    `load` then predicts every label in one pass (model.safetensors and model.onnx stay the task's own
    network, which timm and ONNX users load as before). The files are written together
    (`write_folder_atomic`): a failed write leaves a previous bundle in `directory` complete, never new
    weights beside an old config.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    weights = save(state)
    # The hash lets a loader tell a damaged or swapped weights file from the one this config describes.
    sha256 = hashlib.sha256(weights).hexdigest()
    config = {**bundle_config(backbone, info), "model_sha256": sha256}
    files = {"model.safetensors": weights}
    if other_tasks:
        count = len(networks(backbone.model))
        if any(len(task.heads) != count for task in other_tasks):
            raise ValueError(f"Each other label needs one head per network ({count}).")
        heads = save(head_tensors([task.heads for task in other_tasks]))
        config["other_tasks"] = [task.to_dict() for task in other_tasks]
        config["other_tasks_sha256"] = hashlib.sha256(heads).hexdigest()
        files[OTHER_HEADS_FILE] = heads
    files["config.json"] = json.dumps(config, indent=2).encode()
    files["README.md"] = model_card(config).encode()
    if onnx is not None:
        metadata = onnx_metadata(info.class_names, backbone.preprocessing, info.temperature)
        stamped = with_metadata(onnx, {**metadata, WEIGHTS_KEY: sha256})
        files.update({ONNX_FILE: stamped} if stamped is not None else {})
    written = write_folder_atomic(directory, files)
    # a graph of earlier weights (its hash would say so, but not its temperature), or heads of other
    # labels this config no longer names
    for stale in (name for name in (ONNX_FILE, OTHER_HEADS_FILE) if name not in files):
        (written / stale).unlink(missing_ok=True)
    return written


def bundle_config(backbone: Backbone, info: BundleInfo) -> dict[str, Any]:
    preprocessing = backbone.preprocessing.to_dict()
    preprocessing["input_size"] = list(preprocessing["input_size"])
    preprocessing["resize"] = backbone.preprocessing.describe_resize()
    ordinal = is_ordinal(backbone.model)
    config = {
        "format": BUNDLE_FORMAT,
        "family": backbone.family,
        "architecture": backbone.architecture,
        "architecture_config": backbone.architecture_config,
        "num_classes": len(info.class_names),
        "label_names": info.class_names,
        "task": "ordinal" if ordinal else "classification",
        "preprocessing": preprocessing,
        "source_model": {"spec": backbone.spec, "weights_sha256": backbone.weights_sha256},
        # the whole line of starts, nearest first, so a chained transfer can be compared to its roots
        "ancestry": [{"spec": backbone.spec, "weights_sha256": backbone.weights_sha256}, *backbone.ancestry],
        "data": info.data,
        "data_channels": info.data_channels or backbone.preprocessing.channels,
        "test_time_views": list(info.test_time_views),
        "temperature": info.temperature,
        "operating_point": info.operating_point.to_dict() if info.operating_point else None,
        "metrics": info.metrics,
        "metric_intervals": info.intervals,
        "test_images": info.test_images,
    }
    if isinstance(backbone.model, Ensemble):
        config["ensemble_members"] = len(backbone.model.members)
    elif backbone.family == "timm" and not ordinal:  # timm cannot build the cumulative-link head
        config.update(timm_local_dir_config(backbone, len(info.class_names)))
    return config


def timm_local_dir_config(backbone: Backbone, num_classes: int) -> dict[str, Any]:
    """The keys that let ``timm.create_model("local-dir:BUNDLE", pretrained=True)`` rebuild the model.

    timm reads `architecture`, `num_classes` and `label_names` at the top level (already there),
    `pretrained_cfg` (the preprocessing, as timm names it), and `model_args` for a changed stem.
    """
    source = getattr(backbone.model, "pretrained_cfg", None) or {}
    prep = backbone.preprocessing
    pretrained_cfg = {key: source[key] for key in _TIMM_CFG_KEYS if source.get(key) is not None}
    pretrained_cfg.update(
        input_size=list(prep.input_size),
        mean=list(prep.mean),
        std=list(prep.std),
        interpolation=prep.interpolation,
        crop_pct=prep.crop_pct,
        crop_mode=prep.crop_mode,
        num_classes=num_classes,
    )
    config: dict[str, Any] = {
        "num_features": backbone.num_features,
        "pretrained_cfg": pretrained_cfg,
    }
    if prep.channels not in (1, 3):  # four-band models: the first conv was adapted after creation
        config["model_args"] = {"in_chans": prep.channels}
    return config


def model_card(config: dict[str, Any]) -> str:
    intervals = config.get("metric_intervals") or {}

    def interval(name: str) -> str:
        bounds = intervals.get(name)
        return f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else ""

    metrics = "\n".join(
        f"| {name} | {value:.4f} | {interval(name)} |" for name, value in config["metrics"].items()
    )
    prep = config["preprocessing"]
    return f"""# {config["architecture"]} fine-tuned on {config["data"]}

Fine-tuned with transferkit from `{config["source_model"]["spec"]}`.

## Intended use
Classifies images into: {", ".join(config["label_names"])}. Use it on images like the training data;
it has not been evaluated on anything else.

## Input
{prep["input_size"][1]} x {prep["input_size"][2]} px: {prep["resize"]};
mean {prep["mean"]}, std {prep["std"]}.

## Output
Probabilities are softmax(logits / {config["temperature"]:.4g}), averaged over the test-time views
{", ".join(config["test_time_views"])}; the temperature is fitted on the validation split (1: uncalibrated).
{_decision_text(config)}{_other_tasks_text(config)}

## Test metrics
Measured on {config.get("test_images") or "the"} held-out test images of {config["data"]}.

| metric | value | 95 % interval |
| --- | --- | --- |
{metrics}

## Limits
The intervals show how far these numbers could move on another sample of the same kind of images.
Images unlike the training data (another camera, lighting, product or defect type) were not evaluated:
check the model on a labelled sample of them first (`transferkit evaluate THIS_FOLDER --data ...`).

## Use
`transferkit.load("THIS_FOLDER").predict(["image.png"], top_k=2)`, or `transferkit predict THIS_FOLDER
image.png`.{_timm_text(config)} `transferkit export THIS_FOLDER --format onnx` writes a checked `model.onnx`
(replacing one `fit` kept).

## Files
`model.safetensors` (weights, no pickle) and `config.json` (labels, preprocessing, provenance); when
onnxruntime computed the test metrics above (and the onnx package is installed), `fit` also keeps
their graph as `model.onnx`.
"""


def _decision_text(config: dict[str, Any]) -> str:
    """How the model card's model orders its classes and decides."""
    lines = []
    if config.get("task") == "ordinal":
        lines.append(
            f"The classes are ordered ({' < '.join(config['label_names'])}); a cumulative-link head gives "
            "their probabilities, and the network outputs their logarithms."
        )
    point = config.get("operating_point")
    if point:
        # what the threshold promises new images: the target, or less where too few held-out images had it
        promised = point.get("expected_recall") or point["recall_target"]
        lines.append(
            f"`{point['class_name']}` is predicted whenever its probability is at least "
            f"{point['threshold']:.4g} (chosen on {point['chosen_on']} for a recall target of "
            f"{point['recall_target']:.0%}: new images of it reach it with about {promised:.0%} "
            "probability); otherwise the most probable other class."
        )
    return "\n".join(lines) or "The prediction is the most probable class."


def _other_tasks_text(config: dict[str, Any]) -> str:
    tasks = config.get("other_tasks") or []
    lines = [
        f"It also predicts {task['name']} ({', '.join(task['label_names'])}) through a head of its own on "
        f"the same features: {task['metrics'].get('accuracy', float('nan')):.2%} test accuracy."
        for task in tasks
    ]
    if lines:
        lines.append(
            "`load(...).predict_files`, `transferkit predict` and `transferkit serve` give every label; "
            f"model.safetensors and model.onnx alone give {config['data']}'s, and the other heads are in "
            "tasks.safetensors."
        )
    return "".join(f"\n{line}" for line in lines)


def _timm_text(config: dict[str, Any]) -> str:
    if "pretrained_cfg" not in config:
        return ""
    return (
        ' With timm alone: `timm.create_model("local-dir:THIS_FOLDER", pretrained=True)`, fed images\n'
        "prepared as above."
    )
