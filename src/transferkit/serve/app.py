"""`create_app`: the FastAPI application of `transferkit serve`.

Routes: ``GET /`` (the page), ``GET /health``, ``GET /info``, ``GET /metrics``, ``POST /predict``.
With an API key, every route but ``/`` and ``/health`` needs it in ``X-API-Key``: the page itself
holds no data (it asks for the key and sends it with its calls), and health checks of load balancers
and orchestrators carry no key.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader

from transferkit.errors import DataError
from transferkit.export.predictor import Prediction, ranked
from transferkit.serve.batching import MicroBatcher
from transferkit.serve.config import ServeConfig
from transferkit.serve.inputs import InputError, Upload, read_uploads
from transferkit.serve.limits import UploadLimit
from transferkit.serve.metrics import CONTENT_TYPE, RequestMetrics, ServerMetrics
from transferkit.serve.model import ServedModel, png_data_url

ROUTES = ("/", "/health", "/info", "/metrics", "/predict")
API_KEY_HEADER = "X-API-Key"
# Decoding runs beside the event loop; a few threads bound how many large images are in memory at once.
DECODE_THREADS = 4


class _Services:
    """What the routes share: the model, its batcher (set while the app runs), metrics, decoders."""

    def __init__(self, config: ServeConfig, model: ServedModel) -> None:
        self.config, self.model = config, model
        self.metrics = ServerMetrics()
        self.batcher: MicroBatcher | None = None
        self.decoders = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="transferkit-decode")

    def observe_batch(self, size: int, seconds: float, error: BaseException | None) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.inference.observe(seconds)
        if error is not None:
            self.metrics.errors.inc("model")


def create_app(config: ServeConfig, model: ServedModel | None = None) -> FastAPI:
    """The application serving `model` (by default the bundle `config.model` names)."""
    services = _Services(config, model or ServedModel(config.model, config.backend))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = MicroBatcher(
            services.model.probabilities,
            config.max_batch,
            config.max_wait_ms / 1000,
            services.observe_batch,
        )
        async with batcher:
            services.batcher = batcher
            yield
        services.decoders.shutdown(wait=False)

    app = FastAPI(
        title="transferkit serve",
        summary=f"{services.model.identity.architecture} fine-tuned on {services.model.identity.data}",
        lifespan=lifespan,
    )
    _add_routes(app, services)
    # Middleware added last runs first: metrics see every answer, the 413 included.
    if config.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origin,
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
        )
    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=services.metrics, known_paths=ROUTES)
    return app


def _key_check(api_key: str | None) -> Any:
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def check(given: str | None = Security(header)) -> None:
        # compare_digest: the time taken does not tell how much of a guess was right
        if api_key is not None and not secrets.compare_digest((given or "").encode(), api_key.encode()):
            raise HTTPException(
                401,
                f"Missing or wrong API key: send it in the {API_KEY_HEADER} header.",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )

    return Depends(check)


def _add_routes(app: FastAPI, services: _Services) -> None:
    keyed = [_key_check(services.config.api_key)]
    page = resources.files("transferkit.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": services.model.identity.to_dict()}

    @app.get("/info", dependencies=keyed)
    def info() -> dict[str, Any]:
        limits = {
            "max_batch": services.config.max_batch,
            "max_wait_ms": services.config.max_wait_ms,
            "max_upload_bytes": services.config.max_upload_bytes,
        }
        return {**services.model.info(), "server": limits}

    @app.get("/metrics", dependencies=keyed, response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(services.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/predict", dependencies=keyed)
    async def predict(
        request: Request,
        top_k: int = Query(3, ge=1, description="labels per image, most probable first"),
        preview: bool = Query(False, description="add each image as the model saw it (PNG data URL)"),
    ) -> JSONResponse:
        """Images as multipart files or JSON base64; per image: top labels, all probabilities, or an error."""
        try:
            uploads = await read_uploads(request)
        except InputError as err:
            return JSONResponse({"detail": str(err)}, status_code=err.status)
        results = await asyncio.gather(*(_predict_one(services, u, top_k, preview) for u in uploads))
        body: dict[str, Any] = {"model": services.model.identity.to_dict(), "results": results}
        errors = [result["error"] for result in results if "error" in result]
        if len(errors) == len(results):  # nothing answered: the request as a whole failed
            body["detail"] = "No image could be read. " + " ".join(errors)
            return JSONResponse(body, status_code=422)
        return JSONResponse(body)


async def _predict_one(services: _Services, upload: Upload, top_k: int, preview: bool) -> dict[str, Any]:
    """One image's answer; a bad image is an entry with its error, never a failed request."""
    metrics = services.metrics
    if upload.error is not None:
        metrics.images.inc("error")
        return {"name": upload.name, "error": upload.error}
    loop = asyncio.get_running_loop()
    try:
        pixels = await loop.run_in_executor(
            services.decoders, services.model.pixels, upload.data, upload.name
        )
    except DataError as err:
        metrics.images.inc("error")
        metrics.errors.inc("image")
        return {"name": upload.name, "error": str(err)}
    if services.batcher is None:
        raise RuntimeError("The app is not running: its lifespan starts the batcher.")
    probabilities = await services.batcher.submit(pixels)
    metrics.images.inc("predicted")
    answer = _answer(upload.name, probabilities, services.model, top_k)
    if preview:
        answer["preview"] = await loop.run_in_executor(services.decoders, png_data_url, pixels)
    return answer


def _answer(name: str, row: np.ndarray, model: ServedModel, top_k: int) -> dict[str, Any]:
    """One image's answer from its row of `ServedModel.probabilities`; a bundle's other labels each get
    the same fields under ``other_labels``."""
    probabilities, others = model.split(row)
    # `Classifier.top` orders as load().predict does: a bundle's operating point decides the label
    answer = {
        "name": name,
        **_label_answer(model.classifier.top(probabilities, top_k), model.label_names, probabilities),
    }
    if others:
        answer["other_labels"] = {
            other.name: _label_answer(
                ranked(others[other.name], other.label_names, top_k), other.label_names, others[other.name]
            )
            for other in model.other_labels
        }
    return answer


def _label_answer(top: Prediction, labels: Sequence[str], probabilities: np.ndarray) -> dict[str, Any]:
    return {
        "label": top.label,
        "probability": top.probability,
        "top": [
            {"label": label, "probability": p} for label, p in zip(top.labels, top.probabilities, strict=True)
        ],
        "probabilities": {label: float(p) for label, p in zip(labels, probabilities, strict=True)},
    }
