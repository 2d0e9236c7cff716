"""Step 1: pretrained models from wherever they live, resolved to one Backbone interface.

The names below load their module on first use, and each source module registers itself when a spec
first names it (`sources`): reading a bundle's config.json (`saved`) imports neither torch nor timm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transferkit.models.backbone import Backbone
    from transferkit.models.sources import model_sources, packaged_models, parse_model_spec, resolve_model

_MODULES = {
    "Backbone": "backbone",
    "model_sources": "sources",
    "packaged_models": "sources",
    "parse_model_spec": "sources",
    "resolve_model": "sources",
}

__all__ = [
    "Backbone",
    "model_sources",
    "packaged_models",
    "parse_model_spec",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
