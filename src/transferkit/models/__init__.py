"""Step 1: pretrained models from wherever they live, resolved to one Backbone interface.

The names below load their module on first use, and each source module registers itself when a spec
first names it (`sources`): reading a bundle's config.json (`saved`) imports neither torch nor timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferkit.lazy import lazy_names

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

__getattr__ = lazy_names(__name__, _MODULES)
