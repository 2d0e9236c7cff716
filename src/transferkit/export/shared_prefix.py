"""One classifier under several weight states, with the lower layers that every state shares run once.

The WiSE-FT candidates of a run (`training.interpolation`) differ only in the layers that trained: with
the default strategy the lowest layer groups are frozen and equal in every candidate. Their outputs on
the held-out images' test-time views are computed once; each candidate then runs only the layers above
(on ELPV with Lite0 at 224 px, 43 % of the network's time). Both parts run as `CheckedModule`s
(onnxruntime once it matches PyTorch). The split is checked on the first images (the parts together
must give the whole network's logits); where it cannot be made, or the activations would not fit in
memory (`cache_budget`), every candidate runs whole, as `Classifier.view_logits` runs it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.export.pixel_models import (
    PARITY_ATOL,
    CheckedPixelModel,
    ClassifierNetwork,
    probability_difference,
)
from transferkit.export.predictor import Classifier, replace_attributes
from transferkit.training.fast_inference import CheckedModule, relative_difference
from transferkit.training.features import FEATURE_TOLERANCE
from transferkit.training.inference import run_batched
from transferkit.training.interpolation import State, cloned
from transferkit.training.prefix_cache import (
    bypassed,
    cache_budget,
    cut_point,
    in_batches,
    modules_before,
    modules_from,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 64  # view images run at a time


def view_logits_of_states(
    classifier: Classifier, states: Sequence[State], pixels: np.ndarray, backend: str = "auto"
) -> list[np.ndarray]:
    """``classifier.view_logits(pixels)`` with the network's weights set to each of `states` in turn:
    float32 (views, N, classes) per state. The network keeps the weights it had."""
    network = classifier.network
    assert network is not None, "a classifier over a network in memory (Classifier.from_network)"
    kept = cloned(network.model.state_dict())
    try:
        cut = shared_cut(network.model, states)
        if cut is not None and len(pixels):
            batches = classifier.view_batches(pixels, BATCH_SIZE)
            first = next(batches)
            per_image = bytes_at_split(network, cut, torch.from_numpy(first[1][:2]))
            if per_image is not None and per_image * len(pixels) * len(classifier.views) <= cache_budget():
                chunks = itertools.chain([first], batches)
                return _split_at(classifier, network, cut, states, chunks, backend=backend)
            logger.debug("The WiSE-FT candidates run whole: the network is not split at %s.", cut)
        return [whole_network_logits(classifier, state, pixels, backend) for state in states]
    finally:
        network.model.load_state_dict(kept)


def shared_cut(model: nn.Module, states: Sequence[State]) -> str | None:
    """The lowest module from which the states differ (`cut_point`), when every parameter and buffer of
    the modules before it is equal in all of them; None when they differ from the first layer on."""
    first = states[0]
    differing = {
        name for name, value in first.items() if any(not torch.equal(s[name], value) for s in states)
    }
    parameters = dict(model.named_parameters())
    cut = cut_point(model, {id(parameters[name]) for name in differing if name in parameters})
    if cut is None:
        return None
    before = tuple(f"{name}." for name in modules_before(model, cut))
    return None if any(name.startswith(before) for name in differing) else cut


def bytes_at_split(network: ClassifierNetwork, cut: str, sample: torch.Tensor) -> int | None:
    """Bytes of one image's activations entering `cut`, when the network splits there: with the modules
    from `cut` on passed through, it gives exactly what enters `cut`, and the modules from `cut` on
    (those before it passed through) turn that into the whole network's logits. None when it does not
    (a forward pass that is not a plain chain of its modules)."""
    model = network.model
    entering: list[torch.Tensor] = []
    hook = model.get_submodule(cut).register_forward_pre_hook(lambda _, inputs: entering.append(inputs[0]))
    try:
        with bypassed(model, modules_from(model, cut)):
            lower = run_batched(network, network, sample)
        with bypassed(model, modules_before(model, cut)):
            upper = run_batched(model, model, lower)
        whole = run_batched(network, network, sample)
    except Exception:  # not a plain chain: modules called with other inputs fail in many ways
        return None
    finally:
        hook.remove()
    if not entering or not torch.equal(lower, entering[0]) or not torch.allclose(upper, whole, atol=1e-4):
        return None
    return lower[0].numel() * lower.element_size()


def _split_at(
    classifier: Classifier,
    network: ClassifierNetwork,
    cut: str,
    states: Sequence[State],
    chunks: Iterator[tuple[int, np.ndarray]],
    *,
    backend: str,
) -> list[np.ndarray]:
    """Every state's view logits from the activations entering `cut`, computed once for the view
    batches `chunks` (`Classifier.view_batches`)."""
    model = network.model
    sizes, activations = [], []
    with bypassed(model, modules_from(model, cut)):
        lower = CheckedModule(
            network, backend=backend, difference=relative_difference, tolerance=FEATURE_TOLERANCE
        )
        for size, chunk in chunks:
            sizes.append(size)
            activations.append(_run(lower, torch.from_numpy(np.ascontiguousarray(chunk))))
    joined = torch.cat(activations)
    logits = []
    with bypassed(model, modules_before(model, cut)):
        for state in states:
            model.load_state_dict(state)  # a new module each time: onnxruntime runs a copy of the weights
            upper = CheckedModule(
                model, backend=backend, difference=probability_difference, tolerance=PARITY_ATOL
            )
            logits.append(by_view(_run(upper, joined).numpy(), sizes, len(classifier.views)))
    return logits


def by_view(logits: np.ndarray, sizes: list[int], views: int) -> np.ndarray:
    """Logits of chunks laid out view-major, (sum of views * size, classes) -> (views, N, classes)."""
    parts, start = [], 0
    for size in sizes:
        parts.append(logits[start : start + views * size].reshape(views, size, -1))
        start += views * size
    return np.concatenate(parts, axis=1)


def _run(module: CheckedModule, inputs: torch.Tensor) -> torch.Tensor:
    """`module` on `inputs` in batches of `BATCH_SIZE`; PyTorch alone for a job too small to translate."""
    return in_batches(module.for_work(inputs.numel()), inputs, batch_size=BATCH_SIZE)


def whole_network_logits(
    classifier: Classifier, state: State, pixels: np.ndarray, backend: str
) -> np.ndarray:
    """The view logits of the whole network under `state` (a new pixel model: onnxruntime runs a copy of
    the weights)."""
    network = classifier.network
    assert network is not None
    network.model.load_state_dict(state)
    fresh = replace_attributes(classifier, pixel_model=CheckedPixelModel(network, backend=backend))
    return fresh.view_logits(pixels)
