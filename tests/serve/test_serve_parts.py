"""The server's parts on their own: the micro-batcher, the metrics text, the config and the CLI."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transferkit.cli.main import build_parser, main
from transferkit.errors import ConfigError, MissingDependencyError
from transferkit.serve import server
from transferkit.serve.batching import MicroBatcher
from transferkit.serve.config import ServeConfig
from transferkit.serve.metrics import Histogram


def _sums(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(len(pixels), -1).sum(axis=1, keepdims=True).astype(np.float32)


def test_concurrent_submissions_share_batches_and_keep_their_own_answers() -> None:
    sizes: list[int] = []

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(_sums, max_batch=4, max_wait_s=0.5, observe=lambda n, s, e: sizes.append(n))
        async with batcher:
            images = [np.full((1, 2, 2), i, np.uint8) for i in range(10)]
            return await asyncio.gather(*(batcher.submit(image) for image in images))

    answers = asyncio.run(main())
    assert [float(answer[0]) for answer in answers] == [4.0 * i for i in range(10)]
    assert sizes == [4, 4, 2]  # full batches at once; the rest after at most max_wait


def test_a_failing_model_fails_its_callers_and_the_batcher_goes_on() -> None:
    calls: list[int] = []

    def flaky(pixels: np.ndarray) -> np.ndarray:
        calls.append(len(pixels))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return _sums(pixels)

    async def main() -> tuple[BaseException | np.ndarray, np.ndarray]:
        async with MicroBatcher(flaky, max_batch=8, max_wait_s=0) as batcher:
            first = await asyncio.gather(batcher.submit(np.ones((1, 1, 1), np.uint8)), return_exceptions=True)
            return first[0], await batcher.submit(np.ones((1, 1, 1), np.uint8))

    failed, served = asyncio.run(main())
    assert isinstance(failed, RuntimeError)
    assert served.tolist() == [1.0]


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram("sizes", "Batch sizes.", [1, 4])
    for value in (1, 2, 4, 9):
        histogram.observe(value)
    lines = list(histogram.render())
    assert 'sizes_bucket{le="1"} 1' in lines
    assert 'sizes_bucket{le="4"} 3' in lines
    assert 'sizes_bucket{le="+Inf"} 4' in lines
    assert "sizes_sum 16" in lines and "sizes_count 4" in lines


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_batch", 0, "at least 1"),
        ("port", 70000, "must lie in"),
        ("max_upload_mb", 0, "must be positive"),
    ],
)
def test_bad_limits_are_refused_with_their_bounds(option: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeConfig(model="run", **{option: value})  # type: ignore[arg-type]


def test_the_command_line_fills_the_config_and_binds_locally() -> None:
    args = build_parser().parse_args(["serve", "runs/x", "--max-batch", "4", "--cors-origin", "http://a"])
    assert args.run.__name__ == "run_serve"
    assert (args.model, args.max_batch, args.cors_origin, args.host) == ("runs/x", 4, ["http://a"], None)
    assert ServeConfig().host == "127.0.0.1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "runs/x", "--backend", "tensorrt"])


def test_the_serve_command_module_imports_no_web_stack_or_torch() -> None:
    # Only `run_serve` imports them, so adding the command costs the CLI's start-up nothing.
    heavy = "{'fastapi', 'uvicorn', 'starlette', 'torch'}"
    script = f"import sys, transferkit.cli.serve; print(sorted({heavy} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"


def test_a_missing_web_stack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "fastapi" else real(name))
    with pytest.raises(MissingDependencyError, match=r"pip install 'transferkit\[serve\]'"):
        server.check_dependencies()


def test_a_folder_without_a_bundle_is_refused_before_the_port_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    error = " ".join(capsys.readouterr().err.split())  # rich wraps the line
    assert "is neither a transferkit run directory nor a bundle" in error


def test_the_answer_follows_the_bundles_operating_point(bundle: Path) -> None:
    from transferkit.evaluation.operating_point import OperatingPoint
    from transferkit.serve.app import _answer
    from transferkit.serve.model import ServedModel

    model = ServedModel(bundle, "torch")
    labels = model.label_names
    probabilities = np.full(len(labels), 0.5 / (len(labels) - 1))
    probabilities[0] = 0.5  # the most probable class, but the point flags the last one at 0.05
    plain = _answer("x.png", probabilities, model, top_k=2)
    assert plain["label"] == labels[0]
    point = OperatingPoint(labels[-1], len(labels) - 1, 0.05, 0.95, 1.0, "val (10 images)")
    model.classifier = model.classifier.with_operating_point(point)
    flagged = _answer("x.png", probabilities, model, top_k=2)
    assert flagged["label"] == labels[-1] and flagged["top"][1]["label"] == labels[0]


def test_a_bundle_of_several_labels_answers_each_as_predict_files_does(
    tmp_path: Path, problem_folder: Path, labels: list[str]
) -> None:
    from fastapi.testclient import TestClient
    from torch import nn

    import transferkit
    from transferkit.export import BundleInfo, save_bundle
    from transferkit.export.bundle import OtherTask
    from transferkit.models import resolve_model
    from transferkit.serve.app import create_app
    from transferkit.serve.model import ServedModel

    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(len(labels))
    backbone.preprocessing = backbone.preprocessing.resized(32)
    info = BundleInfo(
        labels, {"accuracy": 0.5}, "animals", test_time_views=("identity", "hflip"), temperature=1.7
    )
    head = nn.Linear(backbone.num_features, 2)
    nn.init.normal_(head.weight, std=2.0)  # random weights that give both classes some probability
    tone = OtherTask("tone", ["dark", "light"], [head], temperature=1.3, metrics={"accuracy": 0.75})
    bundle = save_bundle(backbone, info, tmp_path / "bundle", other_tasks=[tone])
    paths = sorted(str(path) for path in problem_folder.rglob("*.png"))[:4]
    expected = transferkit.load(bundle, backend="torch").predict_files(paths, top_k=2)

    app = create_app(ServeConfig(model=str(bundle), backend="torch"), ServedModel(bundle, "torch"))
    with TestClient(app) as client:
        files = [("images", (Path(path).name, Path(path).read_bytes(), "image/png")) for path in paths]
        answers = client.post("/predict", params={"top_k": 2}, files=files).json()["results"]
        described = client.get("/info").json()["other_labels"]

    assert described == [
        {"name": "tone", "labels": ["dark", "light"], "temperature": 1.3, "metrics": {"accuracy": 0.75}}
    ]
    for answer, result in zip(answers, expected, strict=True):
        assert answer["label"] == result.prediction.label
        other, predicted = answer["other_labels"]["tone"], result.other_labels["tone"]
        assert [entry["label"] for entry in other["top"]] == list(predicted.labels)
        served = [other["probabilities"][label] for label in predicted.labels]
        np.testing.assert_allclose(served, predicted.probabilities, atol=1e-5)
        assert sum(other["probabilities"].values()) == pytest.approx(1, abs=1e-5)
