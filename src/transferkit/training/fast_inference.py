"""Frozen networks run fast: onnxruntime on a CPU, kept only once it has matched PyTorch.

On a CPU, onnxruntime runs EfficientNet-style networks about three times faster than eager PyTorch,
channels-last included (benchmarks/results/predict_throughput.md: 126 against 34 images/s).
`CheckedModule` translates a network in memory (TorchScript's exporter: under a second for Lite0,
where torch.export takes about ten; nothing is written to disk), runs the first batch through both
(and its first image alone through onnxruntime), and keeps onnxruntime only when their outputs agree
within a tolerance. Otherwise, on a GPU, or
without onnxruntime, PyTorch runs. Predictions, the head's frozen features and `rank`'s features all
go through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from transferkit.errors import MissingDependencyError, UnknownNameError
from transferkit.training.inference import inference_device
from transferkit.training.onnx_session import INPUT_NAME, OUTPUT_NAME, OnnxSession

INFERENCE_BACKENDS = ("auto", "onnx", "torch")
PARITY_IMAGES = 4  # images of the first batch both backends run
# Translating takes about a second whatever the input size, and onnxruntime saves about 14 ms per Lite0
# image at 224 px: below this much input (64 RGB images at 224 px), PyTorch runs without translating.
MIN_ELEMENTS = 64 * 3 * 224 * 224

Difference = Callable[[torch.Tensor, torch.Tensor], float]
"""How far onnxruntime's outputs are from PyTorch's (first, second), on the scale the tolerance uses."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceChoice:
    """Which backend runs the network and why; `max_difference` is the largest difference between
    onnxruntime and PyTorch on the `checked_on` images (None when they were not compared)."""

    backend: str
    reason: str
    max_difference: float | None = None
    checked_on: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CheckedModule:
    """A network in inference mode, run by onnxruntime on the CPU when a translation of it matches
    PyTorch on the first batch, by PyTorch otherwise; `choice` says which and why.

    Args:
        module: the network, from its input batch to its output (N, ...).
        device: where PyTorch runs (default: the GPU when there is one); onnxruntime only replaces it on a
            CPU.
        backend: "auto", "onnx" (an error without onnxruntime; a translation that fails or differs still
            falls back, with a warning) or "torch".
        difference: the distance `tolerance` bounds between onnxruntime's and PyTorch's outputs.
        on_match: called with the serialized translation once it has matched PyTorch (to keep it).
        interleaved: PyTorch computes between its calls (a training step): onnxruntime's threads then
            sleep between calls rather than spin, which would hold the cores PyTorch needs.
    """

    def __init__(
        self,
        module: nn.Module,
        device: torch.device | None = None,
        backend: str = "auto",
        *,
        difference: Difference,
        tolerance: float,
        on_match: Callable[[bytes], None] | None = None,
        interleaved: bool = False,
    ) -> None:
        if backend not in INFERENCE_BACKENDS:
            raise UnknownNameError("inference backend", backend, INFERENCE_BACKENDS)
        self.device = device or inference_device()
        self.module = module.eval().to(self.device)
        self.requested = backend
        self.difference, self.tolerance = difference, tolerance
        self.on_match = on_match
        self.interleaved = interleaved
        self.choice = InferenceChoice("torch", "asked for") if backend == "torch" else None
        self._onnx: OnnxSession | None = None
        self._large_job = False

    @property
    def backend(self) -> str:
        """What runs the network, "onnx" or "torch", once the first batch has run; the request before."""
        return self.requested if self.choice is None else self.choice.backend

    @property
    def translation(self) -> bytes | None:
        """The serialized ONNX graph onnxruntime runs, once it has matched PyTorch; None otherwise."""
        return self._onnx.serialized if self._onnx is not None else None

    @property
    def summary(self) -> InferenceChoice:
        """The choice, or before one: PyTorch, for jobs too small to translate for."""
        return self.choice or InferenceChoice("torch", "jobs too small to pay for a translation")

    def expect(self, elements: int) -> None:
        """Announces a job of `elements` input values in all, arriving in batches: when it pays for a
        translation, the next batch, however small, translates."""
        self._large_job = self._large_job or elements >= MIN_ELEMENTS

    def for_work(self, elements: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """What runs a job of `elements` input values: PyTorch alone, undecided, when neither it nor an
        announced job pays for a translation (`MIN_ELEMENTS`); else this module."""
        self.expect(elements)
        return self if self.choice is not None or self._large_job else self.run_torch

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.choice is None:
            return self._choose(inputs)
        return run_onnx(self._onnx, inputs) if self._onnx is not None else self.run_torch(inputs)

    def run_torch(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(inputs.to(self.device)).float().cpu()

    def _choose(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs of the first batch: onnxruntime's when they agree with PyTorch's on its first images
        (onnxruntime then runs from here on), else PyTorch's."""
        reason = self._why_torch()
        if reason is not None:
            self.choice = InferenceChoice("torch", reason)
            return self.run_torch(inputs)
        sample = inputs[:PARITY_IMAGES]
        try:
            onnx_session = in_memory_onnx(self.module, inputs[:2], spinning=not self.interleaved)
            outputs = run_onnx(onnx_session, inputs)
            expected = self.run_torch(sample)
            # the batch axis is dynamic: a single image (as `serve` often sends) must agree too
            difference = max(
                self.difference(outputs[: len(sample)], expected),
                self.difference(run_onnx(onnx_session, inputs[:1]), expected[:1]),
            )
        except Exception as err:  # torch.onnx and onnxruntime raise many unrelated types
            self.choice = InferenceChoice("torch", f"the ONNX translation failed: {err}")
            logger.warning("running %s with PyTorch: %s", type(self.module).__name__, self.choice.reason)
            return self.run_torch(inputs)
        if not difference <= self.tolerance:  # NaN too
            self.choice = InferenceChoice(
                "torch", f"onnxruntime differs from PyTorch by {difference:.1e}", difference, len(sample)
            )
            logger.warning("running with PyTorch: %s (tolerance %.0e)", self.choice.reason, self.tolerance)
            return self.run_torch(inputs)
        self._onnx = onnx_session
        self.choice = InferenceChoice("onnx", "matches PyTorch on the first images", difference, len(sample))
        logger.info("onnxruntime runs %s (difference %.1e)", type(self.module).__name__, difference)
        if self.on_match is not None and onnx_session.serialized is not None:
            self.on_match(onnx_session.serialized)
        return outputs

    def _why_torch(self) -> str | None:
        """Why PyTorch must run, or None when onnxruntime may be tried."""
        if self.device.type != "cpu":
            return f"on {self.device.type}, PyTorch runs on the device"
        if importlib.util.find_spec("onnxruntime") is None:
            if self.requested == "onnx":
                raise MissingDependencyError("onnxruntime", "ONNX inference")
            return "onnxruntime is not installed (pip install 'transferkit[onnx]')"
        return None


def run_onnx(session: OnnxSession, inputs: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session(inputs.cpu().numpy()))


def in_memory_onnx(module: nn.Module, example: torch.Tensor, *, spinning: bool = True) -> OnnxSession:
    """`module` translated to ONNX in memory, with a dynamic batch axis, loaded in onnxruntime."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            module.cpu().eval(),
            (example.cpu(),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object too
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
        )
    return OnnxSession(buffer.getvalue(), spinning=spinning)


def relative_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    """Largest absolute difference, relative to the largest magnitude of `second` (at least 1)."""
    scale = max(1.0, float(second.abs().max()))
    return float((first.float() - second.float()).abs().max()) / scale
