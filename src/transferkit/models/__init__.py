"""Step 1: pretrained models from wherever they live, resolved to one Backbone interface."""

# Importing a source module registers it.
from transferkit.models import hf_source as _hf_source  # noqa: F401
from transferkit.models import packaged as _packaged  # noqa: F401
from transferkit.models import runs as _runs  # noqa: F401
from transferkit.models import timm_source as _timm_source  # noqa: F401
from transferkit.models import torchvision_source as _torchvision_source  # noqa: F401
from transferkit.models.backbone import Backbone
from transferkit.models.sources import model_sources, packaged_models, parse_model_spec, resolve_model

__all__ = [
    "Backbone",
    "model_sources",
    "packaged_models",
    "parse_model_spec",
    "resolve_model",
]
