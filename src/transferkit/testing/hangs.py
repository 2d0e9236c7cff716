"""A guard for calls that might never return (fuzzed inputs): `time_limit` raises `Hang` inside them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Hang(Exception):
    """Raised inside a call that ran past its time limit; not an OSError, so no transferkit code turns
    it into a DataError or catches it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """``with time_limit(5): call()`` raises `Hang` in `call` once it has run `seconds` (main thread,
    POSIX: SIGALRM). A test framework's deadline measures only calls that return; this catches a hang."""

    def give_up(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
