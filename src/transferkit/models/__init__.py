"""Step 1: pretrained models from wherever they live, resolved to one Backbone interface."""

from transferkit.models import files as _files  # noqa: F401  (registers file: sources)
from transferkit.models import packaged as _packaged  # noqa: F401  (registers the packaged models)
from transferkit.models import runs as _runs  # noqa: F401  (registers run: sources)
from transferkit.models.backbone import Backbone, Preprocessing
from transferkit.models.sources import model_sources, packaged_models, resolve_model

__all__ = ["Backbone", "Preprocessing", "model_sources", "packaged_models", "resolve_model"]
