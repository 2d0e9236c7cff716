"""A tiny bundle and `transferkit serve` running on it as a real process, for the server's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import transferkit
from transferkit.export import BundleInfo, save_bundle
from transferkit.models import resolve_model
from transferkit.testing import make_problem_folder
from transferkit.testing.servers import free_port
from transferkit.testing.servers import start_server as launch

LABELS = ["cat", "dog", "fox"]
START_TIMEOUT_S = 90


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny network at 32 px with two test-time views, a temperature and test metrics,
    so the server has everything `load` applies to repeat."""
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(LABELS))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    info = BundleInfo(
        LABELS,
        {"accuracy": 0.5},
        "animals",
        test_time_views=("identity", "hflip"),
        temperature=1.7,
        intervals={"accuracy": [0.4, 0.6]},
        test_images=12,
    )
    return save_bundle(backbone, info, tmp_path_factory.mktemp("served") / "bundle")


@pytest.fixture(scope="session")
def labels() -> list[str]:
    return list(LABELS)


@pytest.fixture(scope="session")
def problem_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_problem_folder(tmp_path_factory.mktemp("problems"), per_class=3)


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path  # the server's working directory: it must stay empty
    log: Path
    api_key: str | None = None
    max_upload_mb: int = 20

    def client(self, key: str | None = "", timeout: float = 60) -> httpx.Client:
        """A client sending `key` ("": the server's own key; None: no key)."""
        key = self.api_key if key == "" else key
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def start_server(
    bundle: Path, root: Path, *flags: str, api_key: str | None = None, max_upload_mb: int = 20
) -> LiveServer:
    """`python -m transferkit serve BUNDLE --port P ...` in a fresh process, once /health answers."""
    workdir, tmp = root / "cwd", root / "tmp"
    workdir.mkdir()
    tmp.mkdir()
    port, log = free_port(), root / "server.log"
    # The code under test, whatever the working directory; multipart spools large parts to TMPDIR.
    source = str(Path(transferkit.__file__).parents[1])
    python_path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "TMPDIR": str(tmp)}
    command = [sys.executable, "-m", "transferkit", "serve", str(bundle), "--port", str(port), *flags]
    command += ["--max-upload-mb", str(max_upload_mb)] + (["--api-key", api_key] if api_key else [])
    url = f"http://127.0.0.1:{port}"
    try:
        process = launch(command, f"{url}/health", log, START_TIMEOUT_S, cwd=workdir, env=env)
    except RuntimeError as err:
        raise RuntimeError(f"transferkit serve did not start: {err}") from None
    return LiveServer(url, process, workdir, log, api_key, max_upload_mb)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")  # one process for the API and page tests: starting one takes seconds
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server with an API key, a 1 MB upload limit, and batches that wait up to 100 ms for
    company, so concurrent requests are grouped."""
    root, flags = tmp_path_factory.mktemp("server"), ["--max-batch", "8", "--max-wait-ms", "100"]
    live = start_server(bundle, root, *flags, api_key="test-key-123", max_upload_mb=1)
    yield live
    stop_server(live)
