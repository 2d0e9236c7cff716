"""Named points where tests stop the process with a real signal, to prove that runs resume exactly.

Set ``TRANSFERKIT_KILL_AT`` to a point's name, e.g. ``step:7`` or ``checkpoint-write``, and optionally
``TRANSFERKIT_KILL_SIGNAL`` to ``TERM`` or ``INT`` (default ``KILL``, which no handler can catch).
Unset, each point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "TRANSFERKIT_KILL_AT"
KILL_SIGNAL = "TRANSFERKIT_KILL_SIGNAL"


def kill_point(name: str) -> None:
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.Signals[f"SIG{os.environ.get(KILL_SIGNAL, 'KILL')}"])
