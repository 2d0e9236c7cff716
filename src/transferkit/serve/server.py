"""`serve`: load the model, then run the application under uvicorn, in one process or several."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from typing import Any

from transferkit.errors import MissingDependencyError
from transferkit.serve.config import ServeConfig

logger = logging.getLogger(__name__)
CONFIG_VARIABLE = "TRANSFERKIT_SERVE_CONFIG"  # how worker processes receive the config
NEEDED = ("fastapi", "uvicorn", "multipart")  # multipart: python-multipart, which parses uploads


def check_dependencies() -> None:
    """Raises MissingDependencyError naming the extra that installs the web stack."""
    for module in NEEDED:
        if importlib.util.find_spec(module) is None:
            package = "python-multipart" if module == "multipart" else module
            raise MissingDependencyError(package, "transferkit serve", install="'transferkit[serve]'")


def serve(config: ServeConfig) -> None:
    """Serves `config.model` until interrupted. The model is loaded before the port opens, so a bad
    bundle fails here, with its error, rather than in a worker."""
    check_dependencies()
    import uvicorn

    from transferkit.serve.app import create_app
    from transferkit.serve.model import ServedModel

    model = ServedModel(config.model, config.backend)
    logger.info(
        "serving %s (%s backend, bundle sha256 %s) on http://%s:%d",
        model.bundle,
        model.backend,
        model.identity.bundle_sha256[:12],
        config.host,
        config.port,
    )
    options: dict[str, Any] = {"host": config.host, "port": config.port, "log_level": "warning"}
    if config.workers == 1:
        uvicorn.run(create_app(config, model), **options)
        return
    # Each worker process loads its own copy; they learn the config from the environment.
    os.environ[CONFIG_VARIABLE] = json.dumps(dataclasses.asdict(config))
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=config.workers, **options)


def app_from_environment() -> Any:
    """The application of one worker process, from the config `serve` put in the environment."""
    from transferkit.serve.app import create_app

    config = ServeConfig(**json.loads(os.environ[CONFIG_VARIABLE]))
    _share_cores(config.workers)
    return create_app(config)


def _share_cores(workers: int) -> None:
    # Every worker's PyTorch would otherwise start one thread per core and they would contend.
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
