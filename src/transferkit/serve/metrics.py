"""Counters and histograms in the Prometheus text format (version 0.0.4), written here rather than
pulled in with prometheus_client: the server needs four metrics and no registry of its own.

All updates happen on the server's event loop (request middleware, the batcher's coroutine), so no lock.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LabelValues = tuple[str, ...]


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    pairs += [extra] if extra else []
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per combination of label values."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self.values: dict[LabelValues, float] = defaultdict(float)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] += amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help_text}"
        yield f"# TYPE {self.name} counter"
        for values, count in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, values)} {_number(count)}"


class Histogram:
    """Observations counted into cumulative buckets (`le`), with their sum and count."""

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()
    ) -> None:
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[LabelValues, list[int]] = {}
        self.sums: dict[LabelValues, float] = defaultdict(float)

    def observe(self, value: float, *label_values: str) -> None:
        counts = self.counts.setdefault(label_values, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1  # the first bucket with le >= value
        self.sums[label_values] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help_text}"
        yield f"# TYPE {self.name} histogram"
        for values, counts in sorted(self.counts.items()):
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += count
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, values, le)} {cumulative}"
            yield f"{self.name}_sum{_labels(self.label_names, values)} {_number(self.sums[values])}"
            yield f"{self.name}_count{_labels(self.label_names, values)} {cumulative}"


class ServerMetrics:
    """What `GET /metrics` reports: requests, their latency, batch sizes, model time, image errors."""

    def __init__(self) -> None:
        self.requests = Counter(
            "transferkit_requests_total", "HTTP requests by path and status code.", ("path", "status")
        )
        self.latency = Histogram(
            "transferkit_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            LATENCY_BUCKETS,
            ("path",),
        )
        self.batch_size = Histogram(
            "transferkit_batch_size", "Images the model ran together in one micro-batch.", BATCH_BUCKETS
        )
        self.inference = Histogram(
            "transferkit_inference_seconds", "Model time per micro-batch.", LATENCY_BUCKETS
        )
        self.images = Counter(
            "transferkit_images_total", "Images received, by outcome: predicted or error.", ("outcome",)
        )
        self.errors = Counter(
            "transferkit_errors_total",
            "Errors by kind: http_<status> for answers of 400 and above, image for an unreadable image, "
            "model for a micro-batch the model failed on.",
            ("kind",),
        )

    def render(self) -> str:
        families = (self.requests, self.latency, self.batch_size, self.inference, self.images, self.errors)
        return "\n".join(line for family in families for line in family.render()) + "\n"


class RequestMetrics:
    """ASGI middleware counting each HTTP request by path and status, and timing it.

    Paths outside `known_paths` are counted as "other", so scanners cannot grow the label set.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, known_paths: Iterable[str]) -> None:
        self.app, self.metrics, self.known_paths = app, metrics, frozenset(known_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), ["500"]  # a response never started counts as an error

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            path = scope["path"] if scope["path"] in self.known_paths else "other"
            self.metrics.requests.inc(path, status[0])
            if int(status[0]) >= 400:
                self.metrics.errors.inc(f"http_{status[0]}")
            self.metrics.latency.observe(time.perf_counter() - started, path)
