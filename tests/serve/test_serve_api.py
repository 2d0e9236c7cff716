"""`transferkit serve` through HTTP against a live server process: the answers equal `load()`'s,
concurrent requests are batched, and bad input gets a clear status while the server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

import transferkit
from transferkit.testing.problems import BAD_FILES

if TYPE_CHECKING:
    from conftest import LiveServer  # the fixture's type; pytest provides the value

GOOD_ODD_FILES = ["train/cat/gray.png", "train/cat/deep.png", "train/dog/palette.png", "train/cat/cmyk.jpg"]


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (path.name, path.read_bytes(), "application/octet-stream")) for path in paths]


def _images(problem_folder: Path) -> list[Path]:
    plain = sorted(problem_folder.glob("test/*/*_00[0-2].png"))
    return plain + [problem_folder / name for name in [*GOOD_ODD_FILES, "test/dog/phone.jpg"]]


def _bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + (chunk(b"IEND", b""))
    )


def _batch_totals(client: httpx.Client) -> tuple[float, float]:
    """(batches run, images in them) from the batch-size histogram of /metrics."""
    text = client.get("/metrics").text
    count = re.search(r"^transferkit_batch_size_count (\S+)$", text, re.MULTILINE)
    total = re.search(r"^transferkit_batch_size_sum (\S+)$", text, re.MULTILINE)
    return (float(count[1]), float(total[1])) if count and total else (0.0, 0.0)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as keyed:
        yield keyed


def test_probabilities_equal_load_predict_proba(
    client: httpx.Client, bundle: Path, problem_folder: Path, labels: list[str]
) -> None:
    paths = _images(problem_folder)
    response = client.post("/predict", files=_files(paths), params={"top_k": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["name"] for result in results] == [path.name for path in paths]
    served = np.array([[result["probabilities"][label] for label in labels] for result in results])
    expected = transferkit.load(bundle).predict_proba([str(path) for path in paths])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    for result, row in zip(results, expected, strict=True):
        order = np.argsort(-row, kind="stable")[:2]
        assert [entry["label"] for entry in result["top"]] == [labels[i] for i in order]
        assert result["label"] == labels[order[0]]


def test_json_base64_answers_like_multipart(client: httpx.Client, problem_folder: Path) -> None:
    paths = _images(problem_folder)[:3]
    as_files = client.post("/predict", files=_files(paths)).json()["results"]
    entries = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths[:2]]
    data_url = "data:image/png;base64," + base64.b64encode(paths[2].read_bytes()).decode()
    response = client.post("/predict", json={"images": [*entries, data_url]})
    assert response.status_code == 200, response.text
    as_json = response.json()["results"]
    for sent, received in zip(as_files, as_json, strict=True):
        assert received["probabilities"] == pytest.approx(sent["probabilities"], abs=1e-6)
    assert as_json[2]["name"] == "image 3"


def test_the_answer_names_the_model(client: httpx.Client, bundle: Path, problem_folder: Path) -> None:
    answer = client.post("/predict", files=_files(_images(problem_folder)[:1])).json()
    config = (bundle / "config.json").read_bytes()
    assert answer["model"]["bundle_sha256"] == hashlib.sha256(config).hexdigest()
    assert answer["model"]["backend"] == "onnx"  # no model.onnx: its weights, translated in memory, checked
    assert client.get("/health").json()["model"] == answer["model"]


def test_info_describes_labels_preprocessing_metrics_and_card(
    client: httpx.Client, server: LiveServer, labels: list[str]
) -> None:
    info = client.get("/info").json()
    assert info["labels"] == labels
    assert info["preprocessing"]["input_size"] == [3, 32, 32]
    assert info["test_time_views"] == ["identity", "hflip"]
    assert info["temperature"] == pytest.approx(1.7)
    assert info["metrics"] == {"accuracy": {"value": 0.5, "interval_95": [0.4, 0.6]}}
    assert "# test_efficientnet fine-tuned on animals" in info["model_card"]
    assert info["server"]["max_upload_bytes"] == server.max_upload_mb * 1024 * 1024


def test_concurrent_requests_are_batched(
    server: LiveServer, client: httpx.Client, problem_folder: Path
) -> None:
    requests, image = 16, _images(problem_folder)[0]
    batches_before, images_before = _batch_totals(client)

    async def post_all() -> list[httpx.Response]:
        headers = dict(client.headers)  # the key
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as peer:
            return await asyncio.gather(
                *(peer.post("/predict", files=_files([image])) for _ in range(requests))
            )

    responses = asyncio.run(post_all())
    assert [response.status_code for response in responses] == [200] * requests
    batches_after, images_after = _batch_totals(client)
    assert images_after - images_before == requests
    assert batches_after - batches_before < requests  # at least one batch held more than one image
    probabilities = {tuple(r.json()["results"][0]["probabilities"].values()) for r in responses}
    assert len({tuple(round(p, 5) for p in row) for row in probabilities}) == 1  # batching changes nothing


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_gets_422_naming_it(client: httpx.Client, problem_folder: Path, name: str) -> None:
    path = next(problem_folder.rglob(name))
    response = client.post("/predict", files=_files([path]))
    assert response.status_code == 422, response.text
    error = response.json()["results"][0]["error"]
    assert name in error
    assert "Cannot decode image" in error
    assert name in response.json()["detail"]


def test_a_decompression_bomb_gets_422(client: httpx.Client) -> None:
    response = client.post("/predict", files=[("images", ("bomb.png", _bomb_png(), "image/png"))])
    assert response.status_code == 422, response.text
    assert "decompression bomb" in response.json()["results"][0]["error"]


def test_a_bad_image_does_not_fail_the_others(client: httpx.Client, problem_folder: Path) -> None:
    good, bad = _images(problem_folder)[0], next(problem_folder.rglob("notes.jpg"))
    response = client.post("/predict", files=_files([good, bad, good]))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [("error" in result) for result in results] == [False, True, False]
    assert results[0]["probabilities"] == results[2]["probabilities"]
    bad_json = client.post("/predict", json={"images": ["not base64!", {"name": "x", "data": 3}]})
    assert bad_json.status_code == 422
    assert [entry["name"] for entry in bad_json.json()["results"]] == ["image 1", "x"]


def test_oversized_upload_with_content_length_gets_413(client: httpx.Client, server: LiveServer) -> None:
    payload = b"\0" * (server.max_upload_mb * 1024 * 1024 + 1)
    response = client.post("/predict", files=[("images", ("big.png", payload, "image/png"))])
    assert response.status_code == 413
    assert "declares" in response.json()["detail"]
    assert "--max-upload-mb" in response.json()["detail"]


def test_oversized_chunked_upload_without_length_gets_413(client: httpx.Client, server: LiveServer) -> None:
    boundary = "transferkitboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked, with no Content-Length
        yield head
        for _ in range(3 * server.max_upload_mb * 16):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/predict", content=body(), headers=headers)
    assert "content-length" not in {key.lower() for key in response.request.headers}
    assert response.status_code == 413
    assert "while streaming" in response.json()["detail"]


def test_a_wrong_content_type_gets_415(client: httpx.Client) -> None:
    response = client.post("/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_an_empty_request_gets_422(client: httpx.Client) -> None:
    response = client.post("/predict", json={"images": []})
    assert response.status_code == 422
    assert "no image" in response.json()["detail"]


@pytest.mark.parametrize("key", [None, "wrong"])
def test_the_api_needs_the_key_but_the_page_and_health_do_not(server: LiveServer, key: str | None) -> None:
    with server.client(key=key) as stranger:
        for method, path in [("POST", "/predict"), ("GET", "/info"), ("GET", "/metrics")]:
            response = stranger.request(method, path)
            assert response.status_code == 401, path
            assert "X-API-Key" in response.json()["detail"]
        assert stranger.get("/health").status_code == 200
        assert stranger.get("/").status_code == 200


def test_after_bad_requests_the_next_one_is_served(
    client: httpx.Client, problem_folder: Path, server: LiveServer
) -> None:
    client.post("/predict", files=[("images", ("bomb.png", _bomb_png(), "image/png"))])
    client.post("/predict", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "image/png"})
    response = client.post("/predict", files=_files(_images(problem_folder)[:1]))
    assert response.status_code == 200
    assert server.process.poll() is None


def test_metrics_speak_the_prometheus_text_format(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for family, kind in [
        ("transferkit_requests_total", "counter"),
        ("transferkit_request_duration_seconds", "histogram"),
        ("transferkit_batch_size", "histogram"),
        ("transferkit_errors_total", "counter"),
    ]:
        assert f"# TYPE {family} {kind}" in text
    assert re.search(r'transferkit_requests_total\{path="/predict",status="413"\} [1-9]', text)
    assert re.search(r'transferkit_errors_total\{kind="image"\} [1-9]', text)
    assert re.search(r'transferkit_request_duration_seconds_bucket\{path="/predict",le="\+Inf"\} [1-9]', text)


def test_nothing_is_written_outside_the_temporary_folder(server: LiveServer, bundle: Path) -> None:
    assert list(server.workdir.iterdir()) == []
    assert sorted(path.name for path in bundle.iterdir()) == ["README.md", "config.json", "model.safetensors"]
