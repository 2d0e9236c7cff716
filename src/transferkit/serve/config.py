"""`ServeConfig`: what `transferkit serve` is told, each option declared once with its bounds and help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from transferkit.config import AT_LEAST_1, POSITIVE, Interval, Section, option

PORTS = Interval(0, 65535)  # 0: any free port


@dataclass
class ServeConfig(Section):
    """The model to serve, where to listen, and the limits that keep the server up under bad input."""

    key: ClassVar[str] = "serve"
    model: str = option("", "run directory or bundle folder")
    host: str = option("127.0.0.1", "address to bind; 0.0.0.0 opens the server to the network", flag=True)
    port: int = option(8000, "port to listen on", within=PORTS, flag=True)
    backend: Literal["auto", "torch", "onnx"] = option(
        "auto",
        "auto: onnxruntime on a CPU (model.onnx when current, else the network translated in memory and "
        "checked against PyTorch), else torch",
        flag=True,
    )
    workers: int = option(
        1, "server processes, each with its own model copy and batcher", within=AT_LEAST_1, flag=True
    )
    max_batch: int = option(32, "most images the model runs at once", within=AT_LEAST_1, flag=True)
    max_wait_ms: float = option(
        10.0, "longest an image waits for others to join its batch", within=Interval(0, 10_000), flag=True
    )
    max_upload_mb: float = option(
        20.0,
        "largest request body; larger ones get 413 before they are read",
        within=POSITIVE,
        flag=True,
    )
    api_key: str | None = option(
        None, "require this key in the X-API-Key header (all but / and /health)", flag=True
    )
    cors_origin: list[str] = option(
        [], "origin allowed to call the API from a browser (repeatable; CORS is off without it)", flag=True
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
