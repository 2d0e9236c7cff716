"""Progress bars for long work outside the epoch loop (decoding, feature extraction), and `Laps`, the
time each step of a run took.

Findings go through `logging` (the ``transferkit`` loggers), which the command line shows; this module
only draws bars and keeps time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

_stderr = Console(stderr=True)


def interactive() -> bool:
    """Whether stderr redraws a bar in place (a terminal or a notebook); a log file or CI gets lines."""
    return _stderr.is_terminal or _stderr.is_jupyter


@contextmanager
def progress_task(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Shows a bar for `total` steps; yields `advance(steps)`."""
    # the time left while it runs, the time it took once done (what a log file keeps)
    remaining = TimeRemainingColumn(elapsed_when_finished=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), remaining)
    # stderr: stdout carries what a command was asked for (tables, csv, json).
    with Progress(*columns, transient=False, console=_stderr) as progress:
        task = progress.add_task(description, total=total)

        def advance(steps: int = 1) -> None:
            progress.advance(task, steps)

        yield advance


def duration(seconds: float) -> str:
    """``42.0 s``, or ``2 min 5 s`` from a minute on."""
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


class Laps:
    """Where the time of a long job went: `lap(name)` charges the seconds since the previous lap (or
    since `started`, a `time.perf_counter()` reading, by default now) to `name`; a name charged twice adds
    up."""

    def __init__(self, started: float | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter() if started is None else started

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now
