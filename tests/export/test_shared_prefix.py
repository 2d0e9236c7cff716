"""WiSE-FT candidates evaluated with their shared lower layers run once: the logits of each run whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.export import shared_prefix
from transferkit.export.predictor import Classifier
from transferkit.models import Backbone, resolve_model
from transferkit.training.fast_inference import CheckedModule, relative_difference
from transferkit.training.interpolation import ALPHAS, State, cloned, interpolate
from transferkit.training.prefix_cache import bypassed, modules_before, modules_from
from transferkit.transforms.views import TEST_VIEWS

LOWER = ("conv_stem", "bn1", "blocks.0", "blocks.1")  # frozen in these tests: equal in every candidate


def _network() -> Backbone:
    torch.manual_seed(0)
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(3)
    return backbone


def _tuned(start: State, frozen: tuple[str, ...] = LOWER) -> State:
    """`start` with every float tensor above `frozen` moved, as fine-tuning moves it."""
    generator = torch.Generator().manual_seed(1)
    return {
        name: value + 0.1 * torch.randn(value.shape, generator=generator)
        if value.is_floating_point() and not name.startswith(frozen)
        else value
        for name, value in start.items()
    }


def _classifier(backbone: Backbone, backend: str = "torch") -> Classifier:
    return Classifier.from_network(
        backbone.model,
        ["a", "b", "c"],
        backbone.preprocessing,
        views=tuple(TEST_VIEWS.values()),
        backend=backend,
    )


def _pixels(count: int = 9) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 3, 160, 160), dtype=np.uint8)


def test_each_candidate_gets_the_logits_it_gets_run_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = _network()
    start = cloned(backbone.model.state_dict())
    tuned = _tuned(start)
    backbone.model.load_state_dict(tuned)
    states = [interpolate(start, tuned, alpha) for alpha in ALPHAS]
    expected = []
    for state in states:
        backbone.model.load_state_dict(state)
        expected.append(_classifier(backbone).view_logits(_pixels()))
    backbone.model.load_state_dict(tuned)

    def run_whole(*_: object) -> None:
        raise AssertionError("the candidates must share their lower layers here")

    monkeypatch.setattr(shared_prefix, "whole_network_logits", run_whole)
    logits = shared_prefix.view_logits_of_states(_classifier(backbone), states, _pixels(), "torch")
    assert len(logits) == len(ALPHAS)
    for got, want in zip(logits, expected, strict=True):
        assert got.shape == want.shape == (len(TEST_VIEWS), 9, 3)
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(logits[0], logits[-1], atol=1e-2)  # the candidates do differ
    for name, value in backbone.model.state_dict().items():  # the network keeps its weights
        assert torch.equal(value, tuned[name]), name


def test_candidates_that_differ_from_the_first_layer_on_run_whole() -> None:
    backbone = _network()
    start = cloned(backbone.model.state_dict())
    assert shared_prefix.shared_cut(backbone.model, [start, _tuned(start)]) == "blocks.2"
    assert shared_prefix.shared_cut(backbone.model, [start, _tuned(start, frozen=())]) is None
    adapted = {**_tuned(start), "bn1.running_mean": start["bn1.running_mean"] + 1.0}  # BatchNorm statistics
    assert shared_prefix.shared_cut(backbone.model, [start, adapted]) is None
    logits = shared_prefix.view_logits_of_states(
        _classifier(backbone), [start, _tuned(start, frozen=())], _pixels(3), "torch"
    )
    assert [x.shape for x in logits] == [(len(TEST_VIEWS), 3, 3)] * 2


def test_both_parts_translate_to_onnx_and_match_pytorch() -> None:
    pytest.importorskip("onnxruntime")
    model = _network().model.eval()
    images = torch.randn(4, 3, 160, 160)
    with bypassed(model, modules_from(model, "blocks.2")):
        lower = CheckedModule(model, backend="onnx", difference=relative_difference, tolerance=1e-4)
        activations = lower(images)
    assert lower.backend == "onnx"
    assert (
        activations.shape[1:]
        == model.blocks[1](model.blocks[0](model.bn1(model.conv_stem(images[:1])))).shape[1:]
    )
    with bypassed(model, modules_before(model, "blocks.2")):
        upper = CheckedModule(model, backend="onnx", difference=relative_difference, tolerance=1e-4)
        logits = upper(activations)
    assert upper.backend == "onnx"
    with torch.inference_mode():
        np.testing.assert_allclose(logits.numpy(), model(images).numpy(), atol=1e-4)
